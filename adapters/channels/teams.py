"""Microsoft Teams incoming webhooks: an Adaptive Card in a message's `attachments`.

That envelope is what both kinds of Teams webhook take: the Workflows ("Post to a channel
when a webhook request is received") that replace Office 365 connectors, and the connectors
while they last (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-
connectors/how-to/connectors-using). Card version 1.4, which Teams renders on desktop,
web and mobile. Teams refuses messages over about 28 KB, so the text is clipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import outbound
from .base import Context, Message, clip

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
TEXT_LIMIT = 10_000
#: The title's colour (Adaptive Cards' named colours): attention while firing, good once
#: resolved, the default else.
COLORS = {"firing": "Attention", "resolved": "Good"}


def card(message: Message) -> dict[str, Any]:
    """The Adaptive Card for `message`."""
    state = str(message.payload.get("state") or "")
    title: dict[str, Any] = {
        "type": "TextBlock",
        "text": clip(message.subject or "Beacon", 500),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": True,
    }
    if state in COLORS:
        title["color"] = COLORS[state]
    body: list[dict[str, Any]] = [title]
    if message.text:
        body.append({"type": "TextBlock", "text": clip(message.text, TEXT_LIMIT), "wrap": True})
    facts = [
        {"title": name, "value": clip(value, 1000)}
        for name, value in (
            ("Services", ", ".join(str(s) for s in message.payload.get("services") or [])),
            ("State", state),
            ("Rule", str(message.payload.get("rule") or "")),
        )
        if value
    ]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    found: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }
    if message.link:
        found["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in Beacon", "url": message.link}
        ]
    return found


def body(message: Message) -> dict[str, Any]:
    """The webhook's JSON for `message`."""
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card(message)}],
    }


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    outbound.post_json(str(target["url"]), body(message), ctx)
