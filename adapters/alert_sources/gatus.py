"""Gatus `alerting.custom` webhooks.

Gatus has no fixed body: its custom provider substitutes placeholders into a user-written
URL and body and, by default, sends a GET. Beacon reads three renderings:

- fields `state`, `endpoint_name`, `endpoint_group`, `endpoint_url`, `description`,
  `errors`, `conditions` as a JSON object (the body template in docs/alert-sources.md), or
  as query-string or form fields (a GET or form-encoded custom alert);
- the Slack-style example of Gatus' README, `{"text": "[ALERT_TRIGGERED_OR_RESOLVED]:
  [ENDPOINT_GROUP] - [ENDPOINT_NAME] - [ALERT_DESCRIPTION] - [RESULT_ERRORS]"}`, split on
  " - " (so an endpoint name holding " - " is misread: use the JSON template then).

`state` is TRIGGERED (firing) or RESOLVED (resolved, sent only with `send-on-resolved`),
or the values the user mapped them to with `placeholders.ALERT_TRIGGERED_OR_RESOLVED`
(adapter settings `triggered` and `resolved`). Gatus exposes no alert id or time: the dedup
key is the endpoint's group and name, and `occurred_at` is when Beacon received it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery
from .common import labels_of, make_event, refuse_placeholder, validate
from .errors import AdapterError

SOURCE_TYPE = "gatus"
FORMAT = "Gatus custom alert with Beacon's template (JSON, form or query fields)"

_PLACEHOLDER = re.compile(
    r"\[(ALERT_TRIGGERED_OR_RESOLVED|ALERT_DESCRIPTION|ENDPOINT_NAME|ENDPOINT_GROUP"
    r"|ENDPOINT_URL|RESULT_ERRORS|RESULT_CONDITIONS)\]"
)


class Settings(BaseModel):
    """Adapter settings of a Gatus alert source."""

    model_config = ConfigDict(extra="forbid")

    triggered: list[str] = Field(default_factory=lambda: ["TRIGGERED"], min_length=1)
    resolved: list[str] = Field(default_factory=lambda: ["RESOLVED"], min_length=1)
    severity: Severity = Severity.CRITICAL


class _Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    state: str
    endpoint_name: str = Field(min_length=1)
    endpoint_group: str = ""
    endpoint_url: str = ""
    description: str = ""
    errors: str = ""
    conditions: str = ""


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the endpoint's alert; an `AdapterError` for templates and other shapes."""
    options = validate(Settings, dict(settings), expected="Gatus adapter settings")
    fields = _fields(delivery)
    alert = validate(_Alert, fields, expected=FORMAT)
    if alert.state in options.triggered:
        status = EventStatus.FIRING
    elif alert.state in options.resolved:
        status = EventStatus.RESOLVED
    else:
        known = ", ".join(repr(v) for v in [*options.triggered, *options.resolved])
        raise AdapterError(f"state: expected one of {known}, got {alert.state!r} ({FORMAT})")
    display = alert.endpoint_name
    if alert.endpoint_group:
        display = f"{alert.endpoint_group}/{alert.endpoint_name}"
    labels = {
        "endpoint_name": alert.endpoint_name,
        "endpoint_group": alert.endpoint_group,
        "endpoint_url": alert.endpoint_url,
        "description": alert.description,
        "errors": alert.errors,
        "conditions": alert.conditions,
        "state": alert.state,
    }
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=f"endpoint:{alert.endpoint_group}/{alert.endpoint_name}",
            status=status,
            severity=options.severity,
            summary=f"{display}: {alert.description}" if alert.description else display,
            details=alert.errors,
            labels=labels_of(labels),
            links=[alert.endpoint_url] if alert.endpoint_url else [],
            occurred_at=delivery.received_at,
            received_at=delivery.received_at,
            raw=fields,
        )
    ]


# The fields that name the alert and its state; free text (descriptions, errors) may hold
# brackets of its own and is not checked for placeholders.
KEY_FIELDS = ("state", "endpoint_name", "endpoint_group")


def _fields(delivery: Delivery) -> dict[str, Any]:
    """The alert's fields from whichever rendering Gatus sent."""
    try:
        text = delivery.body.decode()
    except UnicodeDecodeError:
        raise AdapterError(f"body is not UTF-8 text ({FORMAT})") from None
    if text.lstrip().startswith(("{", "[")):
        document = delivery.json(expected=FORMAT)
        if not isinstance(document, dict):
            raise AdapterError(f"expected a JSON object ({FORMAT}), got {type(document).__name__}")
        if set(document) == {"text"} and isinstance(document["text"], str):
            _refuse_template(document["text"], "text")
            return _from_readme_text(document["text"])
        fields, where = document, ""
    elif text.strip() and not delivery.form and not delivery.query:
        # Neither JSON nor fields: a pasted config or template is refused by name.
        _refuse_template(text, "body")
        fields, where = delivery.fields(), ""
    else:
        fields, where = delivery.fields(), "query" if delivery.query else ""
    for name in KEY_FIELDS:
        _refuse_template(fields.get(name), f"{where}.{name}" if where else name)
    if "state" not in fields:
        raise AdapterError(f"state: missing from the body, form and query string ({FORMAT})")
    return fields


def _refuse_template(value: object, where: str) -> None:
    refuse_placeholder(value, _PLACEHOLDER, where, expected=FORMAT)


def _from_readme_text(text: str) -> dict[str, Any]:
    """Fields of the README example `STATE: group - name - description - errors`."""
    state, colon, rest = text.partition(": ")
    parts = rest.split(" - ", 3)
    if not colon or len(parts) < 2:
        raise AdapterError(
            f"text: expected '<state>: <group> - <name> - <description> - <errors>' as in "
            f"Gatus' README example, got {text[:60]!r} ({FORMAT})"
        )
    parts += [""] * (4 - len(parts))
    return {
        "state": state.strip(),
        "endpoint_group": parts[0].strip(),
        "endpoint_name": parts[1].strip(),
        "description": parts[2].strip(),
        "errors": parts[3].strip(),
    }
