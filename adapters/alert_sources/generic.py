"""Any JSON sender, mapped by JMESPath expressions in the alert source's settings.

    settings:
      alerts: "checks[]"                 # optional: one event per element
      status: "state == 'DOWN' && 'firing' || 'resolved'"
      dedup_key: "id"
      severity: "'critical'"            # optional, default critical
      summary: "message"                # optional
      labels: "{host: host, check: name}"   # optional: an object of scalars
      occurred_at: "checked_at"         # optional: RFC 3339 or Unix time, default received
      details: "output"                 # optional
      links: "[url]"                    # optional: a list of URLs (or one URL)

Each expression but `alerts` is evaluated against one alert: an element of `alerts`, or
the whole body without it. A body-less GET or form post is mapped as its fields. An
expression that yields the wrong type is an `AdapterError` naming the setting, the alert's
index and what came out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jmespath
import orjson
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, field_validator

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery
from .common import make_event, parse_time, validate
from .errors import AdapterError

SOURCE_TYPE = "generic"
FORMAT = "JSON mapped by the source's JMESPath settings"


class Settings(BaseModel):
    """The JMESPath mapping of a generic alert source; every expression must compile."""

    model_config = ConfigDict(extra="forbid")

    alerts: str | None = None
    status: str
    dedup_key: str
    severity: str | None = None
    summary: str | None = None
    labels: str | None = None
    occurred_at: str | None = None
    details: str | None = None
    links: str | None = None

    @field_validator("*")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                jmespath.compile(value)
            except JMESPathError as exc:
                raise ValueError(f"not a JMESPath expression: {exc}") from None
        return value


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event per alert the mapping finds; an `AdapterError` names the setting and alert
    whose expression failed or yielded the wrong type."""
    mapping = validate(Settings, dict(settings), expected="generic adapter settings")
    body = delivery.body.strip()
    if body.startswith((b"{", b"[")):
        # JSON whatever the header says (curl labels a string body urlencoded).
        document: Any = delivery.json(expected=FORMAT)
    elif delivery.form or (not body and delivery.query):
        # A form post (urlencoded or multipart), or a GET's query string: its fields.
        document = delivery.fields()
    else:
        document = delivery.json(expected=FORMAT)
    if mapping.alerts is None:
        return [_event(delivery, mapping, document, where="body")]
    alerts = _search("alerts", mapping.alerts, document, "body")
    if not isinstance(alerts, list):
        raise AdapterError(
            f"settings.alerts: expected a list of alerts, got {_kind(alerts)} ({FORMAT})"
        )
    return [
        _event(delivery, mapping, alert, where=f"alerts[{index}]")
        for index, alert in enumerate(alerts)
    ]


def _search(setting: str, expression: str, data: Any, where: str) -> Any:
    try:
        return jmespath.search(expression, data)
    except (JMESPathError, TypeError, ValueError) as exc:
        raise AdapterError(f"settings.{setting}: failed on {where}: {exc} ({FORMAT})") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {orjson.dumps(value).decode()[:60]}"


def _wrong(setting: str, where: str, wanted: str, value: Any) -> AdapterError:
    return AdapterError(f"settings.{setting}: expected {wanted}, got {_kind(value)} at {where}")


def _event(delivery: Delivery, mapping: Settings, alert: Any, *, where: str) -> AlertEvent:
    def value(setting: str) -> Any:
        expression = getattr(mapping, setting)
        return None if expression is None else _search(setting, expression, alert, where)

    status = value("status")
    if status not in ("firing", "resolved"):
        raise _wrong("status", where, "'firing' or 'resolved'", status)
    dedup_key = value("dedup_key")
    if not _is_scalar(dedup_key) or str(dedup_key) == "":
        raise _wrong("dedup_key", where, "a non-empty string or number", dedup_key)
    severity = value("severity")
    if severity is None:
        severity = Severity.CRITICAL
    elif severity not in list(Severity):
        raise _wrong("severity", where, "one of critical, high, warning, info", severity)
    return make_event(
        expected=FORMAT,
        source_type=SOURCE_TYPE,
        dedup_key=str(dedup_key),
        status=EventStatus(status),
        severity=Severity(severity),
        summary=_text("summary", value("summary"), where),
        details=_text("details", value("details"), where),
        labels=_labels(value("labels"), where),
        links=_links(value("links"), where),
        occurred_at=_time(value("occurred_at"), where, delivery.received_at),
        received_at=delivery.received_at,
        raw=alert,
    )


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _text(setting: str, value: Any, where: str) -> str:
    if value is None:
        return ""
    if not _is_scalar(value):
        raise _wrong(setting, where, "a string", value)
    return str(value)


def _labels(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong("labels", where, "an object of label names to values", value)
    for name, item in value.items():
        if item is not None and not (_is_scalar(item) or isinstance(item, bool)):
            raise _wrong(f"labels.{name}", where, "a string, number or boolean", item)
    return value


def _links(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items if i is not None):
        raise _wrong("links", where, "a URL or a list of URLs", value)
    return [item for item in items if item]


def _time(value: Any, where: str, default: datetime) -> datetime:
    if value is None:
        return default
    if not _is_scalar(value):
        raise _wrong("occurred_at", where, "an RFC 3339 time or a Unix time", value)
    return parse_time(value, field=f"settings.occurred_at at {where}")
