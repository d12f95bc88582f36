"""Email through SendGrid's v3 mail API, with the official SDK."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Header, Mail

from .base import Context, Message, raise_for_status
from .errors import ChannelError


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    if not ctx.sendgrid_api_key:
        raise ChannelError("BEACON_SENDGRID_API_KEY is not set", permanent=True)
    address = str(target.get("address") or "")
    if "@" not in address:
        raise ChannelError(f"{address!r} is not an email address", permanent=True)
    mail = Mail(
        from_email=ctx.email_from,
        to_emails=address,
        subject=message.subject,
        plain_text_content=message.text,
        html_content=message.html,
    )
    for name, value in message.headers.items():
        mail.header = Header(name, value)
    client = SendGridAPIClient(api_key=ctx.sendgrid_api_key, host=ctx.sendgrid_api_url)
    client.client.timeout = 10  # the SDK has no default timeout
    try:
        response = client.send(mail)
    except SendGridHTTPError as exc:
        raise_for_status(
            int(exc.status_code),
            str(exc.body),
            where="SendGrid",
            retry_after_header=(exc.headers or {}).get("Retry-After"),
        )
        raise
    except OSError as exc:  # urllib's connection errors and timeouts
        raise ChannelError(f"could not reach SendGrid: {exc}") from None
    raise_for_status(int(response.status_code), str(response.body), where="SendGrid")
