"""Slack (and Mattermost, Rocket.Chat) incoming webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from . import outbound
from .base import Context, Message


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    text = f"*{message.subject}*\n{message.text}" if message.subject else message.text
    outbound.post(
        str(target["url"]),
        content=orjson.dumps({"text": text}),
        headers={"Content-Type": "application/json"},
        allow_private=ctx.allow_private,
        deadline=ctx.outbound_deadline,
    )
