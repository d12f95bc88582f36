"""Email through SendGrid's v3 mail API, with the official SDK.

`send_batch` sends one message to up to 1,000 recipients in one request, one
personalization each: per-recipient `substitutions` replace tokens in the subject and body
(each person's own unsubscribe and manage links), per-recipient `headers` carry their
`List-Unsubscribe`. SendGrid accepts or refuses a request as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

from .base import Context, Message, raise_for_status
from .errors import ChannelError

#: SendGrid's limit of personalizations in one request.
MAX_RECIPIENTS = 1000


@dataclass(frozen=True)
class Recipient:
    """One person of a batch: their address, the values of the message's tokens for them,
    and email headers of their own."""

    address: str
    substitutions: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    address = str(target.get("address") or "")
    send_batch(message, [Recipient(address, headers=message.headers)], ctx)


def send_batch(message: Message, recipients: Sequence[Recipient], ctx: Context) -> None:
    """One request for all `recipients` (at most `MAX_RECIPIENTS`); `ChannelError` for the
    whole batch when SendGrid refuses it."""
    if not ctx.sendgrid_api_key:
        raise ChannelError("BEACON_SENDGRID_API_KEY is not set", permanent=True)
    if not 0 < len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(f"a batch has 1 to {MAX_RECIPIENTS} recipients, not {len(recipients)}")
    for recipient in recipients:
        if "@" not in recipient.address:
            raise ChannelError(f"{recipient.address!r} is not an email address", permanent=True)
    mail = Mail(
        from_email=ctx.email_from,
        subject=message.subject,
        plain_text_content=message.plain,
        html_content=message.html,
    )
    # The personalizations as the API's JSON: the SDK's helper objects parse each address
    # with the email package, which cost more than the rest of a batch of 1,000.
    body = mail.get()
    body["personalizations"] = [
        {
            "to": [{"email": recipient.address}],
            **({"substitutions": dict(recipient.substitutions)} if recipient.substitutions else {}),
            **({"headers": dict(recipient.headers)} if recipient.headers else {}),
        }
        for recipient in recipients
    ]
    client = SendGridAPIClient(api_key=ctx.sendgrid_api_key, host=ctx.sendgrid_api_url)
    client.client.timeout = 30  # the SDK has no default timeout; a batch is up to ~1 MB
    try:
        response = client.send(body)
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
