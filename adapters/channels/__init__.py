"""Outbound channels: one module per kind, looked up through `CHANNELS`.

`send(message, target, ctx)` delivers one message to one target (a subscriber's address or
a team channel's config) and raises `ChannelError(permanent=...)` on failure.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .base import Context, Message
from .errors import ChannelError

CHANNELS: dict[str, str] = {
    "webhook": "adapters.channels.webhook",
    "slack": "adapters.channels.slack",
    "discord": "adapters.channels.discord",
    "teams": "adapters.channels.teams",
    "email": "adapters.channels.sendgrid_email",
    "smtp": "adapters.channels.smtp_email",
    "sms": "adapters.channels.twilio_sms",
}


#: Modules the workers pick that no config declares: what `email` means in embedded mode
#: without a provider (`workers.notify.channel_module`).
TRANSPORTS: dict[str, str] = {"email-outbox": "adapters.channels.outbox_email"}


def get_channel(kind: str) -> ModuleType:
    try:
        return importlib.import_module(CHANNELS.get(kind) or TRANSPORTS[kind])
    except KeyError:
        raise ChannelError(
            f"unknown channel type {kind!r} (known: {', '.join(sorted(CHANNELS))})", permanent=True
        ) from None


__all__ = ["CHANNELS", "ChannelError", "Context", "Message", "get_channel"]
