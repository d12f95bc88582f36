"""Discord webhooks (`https://discord.com/api/webhooks/<id>/<token>`): one embed, its colour
the state's.

Discord refuses the whole message (400, "Invalid Form Body") when a title is over 256
characters, a description over 4,096, a field over 1,024 or an embed over 6,000 in all
(https://discord.com/developers/docs/resources/message#embed-object-embed-limits), so each
part is clipped. Mentions are switched off: an alert's text saying `@everyone` must not ping
a whole server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import outbound
from .base import Context, Message, clip

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_LIMIT = 1024
#: Embed colours as integers (0xRRGGBB): red while firing, green once resolved, grey else.
COLORS = {"firing": 0xD1242F, "resolved": 0x1A7F37}
OTHER_COLOR = 0x6E7781


def body(message: Message) -> dict[str, Any]:
    """The webhook's JSON for `message`."""
    state = str(message.payload.get("state") or "")
    embed: dict[str, Any] = {
        "title": clip(message.subject or "Beacon", TITLE_LIMIT),
        "color": COLORS.get(state, OTHER_COLOR),
    }
    if message.text:
        embed["description"] = clip(message.text, DESCRIPTION_LIMIT)
    if message.link:
        embed["url"] = message.link
    fields: list[dict[str, Any]] = []
    services = [str(s) for s in message.payload.get("services") or []]
    if services:
        fields.append({"name": "Services", "value": clip(", ".join(services), FIELD_LIMIT)})
    if state:
        fields.append({"name": "State", "value": clip(state, FIELD_LIMIT), "inline": True})
    if message.payload.get("rule"):
        rule = clip(str(message.payload["rule"]), FIELD_LIMIT)
        fields.append({"name": "Rule", "value": rule, "inline": True})
    if fields:
        embed["fields"] = fields
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


def send(message: Message, target: Mapping[str, Any], ctx: Context) -> None:
    outbound.post_json(str(target["url"]), body(message), ctx)
