"""Signed webhooks: the payload as JSON, with an HMAC-SHA256 signature of the body.

Receivers verify `X-Beacon-Signature: t=<unix time>,v1=<hex>` where v1 is
HMAC-SHA256(secret, "<t>.<body>"): the timestamp inside the signed text lets them refuse
replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson

from . import outbound
from .base import Context, Message


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    url = str(target["url"])
    body = orjson.dumps(dict(message.payload) or {"subject": message.subject, "text": message.text})
    headers = {"Content-Type": "application/json", "User-Agent": "Beacon-Webhook/1"}
    secret = target.get("secret")
    if secret:
        headers["X-Beacon-Signature"] = signature(str(secret), body, int(time.time()))
    outbound.post(
        url,
        content=body,
        headers=headers,
        allow_private=ctx.allow_private,
        deadline=ctx.outbound_deadline,
    )
