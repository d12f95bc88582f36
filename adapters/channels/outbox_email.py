"""Email kept, not sent: embedded mode's transport when neither SendGrid nor SMTP is set.

A new operator trying Beacon has no mail provider yet. Rather than fail every message (and
disable the subscriber with an error about a variable nobody set), each one is written to
the data directory's `outbox/` as an `.eml` file (any mail client opens it) and logged with
its text, so confirmation links and account links can be followed by hand. Nothing is sent.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from .base import Context, Message
from .errors import ChannelError

log = logging.getLogger("beacon.email")


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    address = str(target.get("address") or "")
    if "@" not in address or "\n" in address or "\r" in address:
        raise ChannelError(f"{address!r} is not an email address", permanent=True)
    if not ctx.outbox_dir:
        raise ChannelError(
            "no email provider is configured: set BEACON_SENDGRID_API_KEY or BEACON_SMTP_URL",
            permanent=True,
        )
    now = datetime.now(UTC)
    mail = EmailMessage()
    mail["From"] = ctx.email_from
    mail["To"] = address
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = make_msgid(domain="beacon.invalid")
    mail["X-Beacon-Outbox"] = "not sent: no email provider is configured"
    for name, value in message.headers.items():
        mail[name] = value
    mail.set_content(message.plain)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    folder = Path(ctx.outbox_dir)
    # Sortable by time; the random part keeps two messages of one microsecond apart.
    path = folder / f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.eml"
    try:
        # The messages carry live links (a password reset takes an account over): for
        # Beacon's own user only, whatever the umask.
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(bytes(mail))
        temporary.replace(path)  # a reader never sees half a message
    except OSError as exc:
        raise ChannelError(f"could not write {path}: {exc.strerror or exc}") from None
    log.warning(
        "email to %s not sent (no email provider is configured), kept in %s\nSubject: %s\n\n%s",
        address,
        path,
        message.subject,
        message.plain.rstrip(),
    )
