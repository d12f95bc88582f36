"""Slack incoming webhooks (Mattermost and Rocket.Chat take the same `text`).

Slack shows `blocks` and uses `text` for the notification and wherever blocks are not shown
(Mattermost, screen readers): both are sent, and `text` alone says everything. mrkdwn needs
`&`, `<` and `>` escaped, or an alert's `<html>` becomes a broken link
(https://api.slack.com/reference/surfaces/formatting#escaping). Slack refuses a message
whose header is over 150 characters or a section over 3,000, so both are clipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import outbound
from .base import Context, Message, clip

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
#: A circle before the title says the state at a glance in the channel list.
STATE_MARK = {"firing": ":red_circle:", "resolved": ":large_green_circle:"}


def escape(text: str) -> str:
    """`text` as literal mrkdwn: the three characters Slack's formatting reads."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def body(message: Message) -> dict[str, Any]:
    """The webhook's JSON for `message`: `text` (the fallback, complete) and `blocks`."""
    state = str(message.payload.get("state") or "")
    mark = STATE_MARK.get(state, "")
    link = f"<{message.link}|Open in Beacon>" if message.link else ""
    heading = f"*{escape(message.subject)}*" if message.subject else ""
    text = "\n".join(filter(None, [heading, escape(message.text), link]))
    blocks: list[dict[str, Any]] = []
    if message.subject:
        title = clip(f"{mark} {message.subject}" if mark else message.subject, HEADER_LIMIT)
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": title}})
    if message.text:
        section = clip(escape(message.text), SECTION_LIMIT)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": section}})
    facts = _facts(message.payload)
    if facts:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]})
    if message.link:
        button = {"type": "plain_text", "text": "Open in Beacon"}
        blocks.append(
            {
                "type": "actions",
                "elements": [{"type": "button", "text": button, "url": message.link}],
            }
        )
    return {"text": text, "blocks": blocks} if blocks else {"text": text}


def _facts(payload: Mapping[str, Any]) -> str:
    parts = []
    if payload.get("rule"):
        parts.append(f"Rule `{escape(str(payload['rule']))}`")
    if payload.get("state"):
        parts.append(escape(str(payload["state"])))
    services = [escape(str(s)) for s in payload.get("services") or []]
    if services:
        parts.append(", ".join(services))
    return clip(" \u00b7 ".join(parts), SECTION_LIMIT)


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    outbound.post_json(str(target["url"]), body(message), ctx)
