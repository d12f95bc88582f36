"""Uptime Kuma "Webhook" notifications, in every body preset the tool offers.

Accepted: the JSON preset (`{heartbeat, monitor, msg}`), the form-data preset (one multipart
field `data` holding that JSON), the v2.1+ GET method (query fields `msg`, `heartbeat`,
`monitor`, the last two JSON strings) and custom bodies, which Uptime Kuma sends as
`application/x-www-form-urlencoded` even when they hold JSON, so a body starting with `{`
is read as JSON whatever its content type.

`heartbeat.status` 0 (DOWN) fires and 1 (UP) resolves; 2 (PENDING) and 3 (MAINTENANCE) are
acknowledged without an event. The dedup key is `monitor:<monitor.id>`. Deliveries without a
heartbeat (the Test button, certificate and domain expiry notices) are test events: they are
acknowledged and change nothing, with label `notice` saying which kind they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import make_event, parse_time, text_labels, validate
from .errors import AdapterError

SOURCE_TYPE = "uptime-kuma"
FORMAT = "Uptime Kuma webhook"

# heartbeat.status -> (event status, severity); PENDING (2) and MAINTENANCE (3) have none.
HEARTBEAT_STATUS: dict[int, tuple[EventStatus, Severity]] = {
    0: (EventStatus.FIRING, Severity.CRITICAL),
    1: (EventStatus.RESOLVED, Severity.CRITICAL),
}
SILENT_STATUSES = frozenset({2, 3})

# Uptime Kuma stores "https://" as the url of monitors that have none (ping, DNS, ...).
_EMPTY_URLS = frozenset({"", "http://", "https://"})


class Tag(BaseModel):
    """A monitor tag (`monitor.tags[]`)."""

    model_config = ConfigDict(extra="allow")

    name: str
    value: str | None = None


class Monitor(BaseModel):
    """The monitor JSON Uptime Kuma sends (`includeSensitiveData` off)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: int
    name: str = ""
    type: str | None = None
    url: str | None = None
    hostname: str | None = None
    port: int | None = None
    path_name: str | None = Field(default=None, alias="pathName")
    tags: list[Tag] = Field(default_factory=list)


class Heartbeat(BaseModel):
    """The beat that caused the notification."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    monitor_id: int | None = Field(default=None, alias="monitorID")
    status: int
    time: str | None = None
    msg: str = ""


class Notification(BaseModel):
    """The webhook body; `heartbeat` is null for notices that are not beats."""

    model_config = ConfigDict(extra="allow")

    heartbeat: Heartbeat | None = None
    monitor: Monitor | None = None
    msg: str = ""


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """The monitor's new state as one event; a test event for notices without a heartbeat;
    nothing for PENDING and MAINTENANCE beats."""
    document = _document(delivery)
    # Uptime Kuma always sends heartbeat (null for notices) and, for a notice, its msg: any
    # other object is not one of its deliveries and must not pass for a notice that
    # changes nothing.
    missing = "heartbeat" if "heartbeat" not in document else None
    if missing is None and document["heartbeat"] is None and "msg" not in document:
        missing = "msg"
    if missing:
        raise AdapterError(
            f"{missing}: missing ({FORMAT} sends heartbeat, monitor and msg); a custom "
            "body belongs to a source of type generic"
        )
    note = validate(Notification, document, expected=FORMAT)
    if note.heartbeat is None:
        return [_notice(note, document, delivery)]
    beat = note.heartbeat
    if beat.status in SILENT_STATUSES:
        return []
    if beat.status not in HEARTBEAT_STATUS:
        raise AdapterError(
            f"heartbeat.status: expected 0 (down), 1 (up), 2 (pending) or 3 (maintenance), "
            f"got {beat.status} ({FORMAT})"
        )
    status, severity = HEARTBEAT_STATUS[beat.status]
    monitor = note.monitor
    monitor_id = monitor.id if monitor is not None else beat.monitor_id
    if monitor_id is None:
        raise AdapterError(f"monitor.id: missing, and heartbeat.monitorID too ({FORMAT})")
    url = monitor.url if monitor is not None and monitor.url not in _EMPTY_URLS else None
    occurred = parse_time(beat.time, field="heartbeat.time") if beat.time else delivery.received_at
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=f"monitor:{monitor_id}",
            status=status,
            severity=severity,
            summary=note.msg or beat.msg,
            details=beat.msg,
            labels={"monitor_id": str(monitor_id), **_monitor_labels(monitor, url)},
            links=[url] if url else [],
            occurred_at=occurred,
            received_at=delivery.received_at,
            raw=document,
        )
    ]


def _monitor_labels(monitor: Monitor | None, url: str | None) -> dict[str, str]:
    if monitor is None:
        return {}
    labels = text_labels(
        monitor_name=monitor.name,
        monitor_type=monitor.type,
        monitor_url=url,
        host=monitor.hostname,
        port=monitor.port,
        monitor_path=monitor.path_name,
    )
    values: dict[str, list[str]] = {}
    for tag in monitor.tags:
        # A tag without a value still matches `exists`; "true" reads better than "".
        found = values.setdefault(f"tag.{tag.name}", [])
        if (tag.value or "true") not in found:
            found.append(tag.value or "true")
    # A key given several values (region=eu, region=us) keeps them all, comma-joined.
    labels.update({name: ",".join(found) for name, found in values.items()})
    return labels


def _notice(note: Notification, document: dict[str, Any], delivery: Delivery) -> AlertEvent:
    text = note.msg
    if text.endswith(" Testing"):
        kind = "test"
    elif "certificate" in text and "will expire" in text:
        kind = "certificate_expiry"
    elif text.startswith("Domain name") and "will expire" in text:
        kind = "domain_expiry"
    else:
        kind = "other"
    return make_event(
        expected=FORMAT,
        source_type=SOURCE_TYPE,
        dedup_key=f"notice:{kind}",
        status=EventStatus.FIRING,
        severity=Severity.INFO,
        summary=text,
        labels={"notice": kind},
        occurred_at=delivery.received_at,
        received_at=delivery.received_at,
        raw=document,
        test=True,
    )


def _document(delivery: Delivery) -> dict[str, Any]:
    form = delivery.form or {}
    if "data" in form:
        return require_object(_json_field(form["data"], "data"), expected=FORMAT)
    if delivery.body.lstrip().startswith(b"{"):
        return require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    fields = delivery.fields()
    if "heartbeat" in fields or "msg" in fields:
        return {
            "msg": fields.get("msg", ""),
            "heartbeat": _json_field(fields.get("heartbeat", "null"), "heartbeat"),
            "monitor": _json_field(fields.get("monitor", "null"), "monitor"),
        }
    raise AdapterError(
        "expected a JSON body, a multipart field 'data' or query fields msg, heartbeat and "
        f"monitor ({FORMAT}); a custom body without these belongs to the generic adapter"
    )


def _json_field(text: str, name: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise AdapterError(f"{name}: not valid JSON ({exc}) ({FORMAT})") from None
