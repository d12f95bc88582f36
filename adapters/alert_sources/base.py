"""What every alert-source adapter receives and promises.

An adapter module defines

    parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]

and, when the tool signs its deliveries,

    verify(delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime) -> None

which raises `SignatureError`. It may define `Settings`, a pydantic model (extra="forbid")
of its adapter settings, checked by `beacon apply`. Adapters are pure: no store, no
network, no clock (`delivery.received_at` and `now` are passed in), and they never mutate
their input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from .errors import AdapterError


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as the intake received it.

    `headers` has lower-case names. `form` holds the fields of a form or multipart body
    (the intake decodes the transport; the adapter decides what the fields mean), `query`
    the query string's fields.
    """

    body: bytes
    received_at: datetime
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] | None = None
    content_type: str = ""

    def json(self, *, expected: str) -> Any:
        """The body as JSON, or an `AdapterError` naming the `expected` format."""
        if not self.body.strip():
            raise AdapterError(f"empty body: expected {expected}")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            placeholder = _placeholder_at(self.body, exc.pos)
            if placeholder is not None:
                raise AdapterError(
                    f"body is not valid JSON: {placeholder!r} at character {exc.pos} is an "
                    "unrendered template placeholder, so this is the tool's template, not a "
                    f"delivery: expected {expected}"
                ) from None
            raise AdapterError(f"body is not valid JSON ({exc}): expected {expected}") from None

    def fields(self) -> dict[str, str]:
        """Form fields, else query-string fields, else a urlencoded body: for tools that send
        key=value pairs rather than JSON (UptimeRobot, Gatus, Uptime Kuma 2.x GET)."""
        if self.form:
            return dict(self.form)
        if self.query:
            return dict(self.query)
        try:
            text = self.body.decode()
        except UnicodeDecodeError:
            return {}
        return dict(parse_qsl(text, keep_blank_values=True))


# Template placeholders tools leave in a body that was posted unrendered: Handlebars and Go
# templates ({{ x }}), ${x}, Healthchecks and Datadog ($NAME), Zabbix ({ALERT.SUBJECT}),
# UptimeRobot (*monitorURL*).
_PLACEHOLDER = re.compile(
    r"\{\{.*?\}\}|\$\{[^}\n]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{[A-Z][A-Z0-9_.]*\}|\*[A-Za-z][A-Za-z0-9_]*\*"
)


def _placeholder_at(body: bytes, pos: int) -> str | None:
    """The placeholder where JSON parsing stopped at character `pos`, if one is there (a
    placeholder elsewhere in a body broken for another reason proves nothing)."""
    text = body.decode("utf-8", "replace")
    for match in _PLACEHOLDER.finditer(text, max(0, pos - 200), pos + 200):
        if match.start() <= pos + 1 and pos < match.end():
            return match.group(0)
    return None


def require_object(document: Any, *, expected: str) -> dict[str, Any]:
    """`document` if it is a JSON object, else an `AdapterError` naming the `expected` format."""
    if not isinstance(document, dict):
        raise AdapterError(f"expected a JSON object ({expected}), got {type(document).__name__}")
    return document
