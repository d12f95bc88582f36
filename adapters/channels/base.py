"""What every outbound channel receives.

A channel module defines `send(message: Message, target: Mapping[str, Any], ctx: Context)
-> None`, raising `ChannelError`: 2xx is success, 429/5xx/timeouts are temporary, other 4xx
permanent. Retries live in one place, the outbox's backoff; never in a loop here.

Requests to URLs that subscribers or teams chose go through `outbound` (resolved once,
checked, pinned, no redirects, one deadline); the providers' SDKs (SendGrid, Twilio) talk
to the API URLs the operator configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from .errors import ChannelError


@dataclass(frozen=True)
class Message:
    """A notification: `subject` and `text` for people, `payload` for machines (webhooks)."""

    subject: str
    text: str
    html: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    #: Extra email headers (e.g. RFC 8058 `List-Unsubscribe`); other channels ignore them.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The same for every attempt to send this message (a webhook's `webhook-id`, which
    #: receivers deduplicate on); empty: each attempt gets a new one.
    id: str = ""
    #: Where to look (an incident or page), kept apart from `text` so that chat tools can
    #: make it a button; `plain` puts it after the text for channels that cannot.
    link: str = ""

    @property
    def plain(self) -> str:
        """The text with the link on a line of its own after it."""
        return "\n".join(filter(None, [self.text, self.link]))


@dataclass(frozen=True)
class Context:
    """Provider credentials and policy, taken from Beacon's settings by the worker."""

    sendgrid_api_key: str = ""
    sendgrid_api_url: str = "https://api.sendgrid.com"
    email_from: str = "status@beacon.invalid"
    smtp_url: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = ""
    twilio_api_url: str = "https://api.twilio.com"
    allow_private: bool = False
    #: Seconds for a whole outbound webhook or chat-hook request (`BEACON_WEBHOOK_TIMEOUT`,
    #: default `outbound.DEADLINE`).
    outbound_deadline: float = 10.0
    #: SMS per second from this process (`BEACON_TWILIO_RATE`).
    twilio_rate: float = 10.0
    #: Webhook requests in flight at once (`BEACON_WEBHOOK_CONCURRENCY`).
    webhook_concurrency: int = 50
    #: Embedded mode without an email provider: where emails are kept instead of sent
    #: (`outbox_email`); empty when they cannot be kept either.
    outbox_dir: str = ""


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut at a word where one is near and marked with
    an ellipsis: chat tools refuse a message whose title or body is over their limit."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip() + "\u2026"


def is_permanent(status: int) -> bool:
    """True for an HTTP status that retrying cannot fix: a 4xx other than 429 (rate limited)."""
    return 400 <= status < 500 and status != 429


#: The longest `Retry-After` honoured: a provider asking for more is waited on this long.
MAX_RETRY_AFTER = 3600.0


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date, RFC 9110
    10.2.3), at most `MAX_RETRY_AFTER`; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def raise_for_status(
    status: int, body: str, *, where: str, retry_after_header: str | None = None
) -> None:
    """Nothing for a 2xx; else `ChannelError` quoting the body, permanent as `is_permanent`,
    with the answer's `Retry-After`."""
    if 200 <= status < 300:
        return
    raise ChannelError(
        f"{where} answered {status}: {body[:200]}",
        permanent=is_permanent(status),
        retry_after=retry_after(retry_after_header),
    )
