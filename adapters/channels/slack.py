"""Slack (and Mattermost, Rocket.Chat) incoming webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Context, Message, check_public_url, post


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    url = str(target["url"])
    check_public_url(url, allow_private=ctx.allow_private)
    text = f"*{message.subject}*\n{message.text}" if message.subject else message.text
    post(url, json={"text": text})
