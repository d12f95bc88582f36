"""Email through SMTP (`BEACON_SMTP_URL=smtp://user:pass@host:587`, `smtps://` for TLS)."""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

from .base import Context, Message
from .errors import ChannelError


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    if not ctx.smtp_url:
        raise ChannelError(
            "no email provider is configured: set BEACON_SENDGRID_API_KEY or BEACON_SMTP_URL",
            permanent=True,
        )
    url = urlsplit(ctx.smtp_url)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise ChannelError(
            "BEACON_SMTP_URL must be smtp://host[:port] or smtps://...", permanent=True
        )
    mail = EmailMessage()
    mail["From"] = ctx.email_from
    mail["To"] = str(target["address"])
    mail["Subject"] = message.subject
    for name, value in message.headers.items():
        mail[name] = value
    mail.set_content(message.plain)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    client_class = smtplib.SMTP_SSL if url.scheme == "smtps" else smtplib.SMTP
    try:
        with client_class(
            url.hostname, url.port or (465 if url.scheme == "smtps" else 25), timeout=10
        ) as smtp:
            if url.scheme == "smtp" and smtp.has_extn("starttls"):
                smtp.starttls()
            if url.username:
                smtp.login(unquote(url.username), unquote(url.password or ""))
            smtp.send_message(mail)
    except smtplib.SMTPRecipientsRefused as exc:
        raise ChannelError(f"recipient refused: {exc.recipients}", permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(f"SMTP delivery failed: {exc}") from None
