"""Webhooks signed as Standard Webhooks (https://www.standardwebhooks.com/).

The body is the payload as JSON (Statuspage's envelope for subscribers). Each request
carries `webhook-id` (the same on every attempt of one message, so receivers deduplicate on
it), `webhook-timestamp` (Unix seconds) and, when the target has a secret,
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, made by the
`standardwebhooks` library that receivers verify with.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from math import floor
from typing import Any

import orjson
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from . import outbound
from .base import Context, Message
from .errors import ChannelError


def signed_headers(
    secret: str | None, message_id: str, body: bytes, at: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers for `body` (no signature without a secret)."""
    headers = {"webhook-id": message_id, "webhook-timestamp": str(floor(at.timestamp()))}
    if secret:
        try:
            signer = Webhook(secret)
        except (ValueError, RuntimeError, EmptyWebhookSecretError) as exc:  # not base64, empty
            raise ChannelError(f"the signing secret is not valid: {exc}", permanent=True) from None
        headers["webhook-signature"] = signer.sign(message_id, at, body)
    return headers


def request(message: Message, target: Mapping[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    """The URL, body and headers of the signed request for `message`."""
    body = orjson.dumps(
        dict(message.payload) or {"subject": message.subject, "text": message.plain}
    )
    secret = target.get("secret")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Beacon-Webhook/1",
        **signed_headers(
            str(secret) if secret else None,
            message.id or f"msg_{uuid.uuid4().hex}",
            body,
            datetime.now(UTC),
        ),
    }
    return str(target["url"]), body, headers


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    url, body, headers = request(message, target)
    outbound.post(
        url,
        content=body,
        headers=headers,
        allow_private=ctx.allow_private,
        deadline=ctx.outbound_deadline,
    )


async def asend(client: outbound.Outbound, message: Message, target: Mapping[str, Any]) -> None:
    """`send` on a shared client, for many webhooks at once (a fan-out)."""
    url, body, headers = request(message, target)
    await client.post(url, content=body, headers=headers)
