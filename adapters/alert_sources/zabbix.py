"""Zabbix webhook media types.

Zabbix has no fixed webhook body: a media type is a list of macro parameters plus a script
that posts them. Beacon reads three bodies, told apart by their keys:

- *media-type parameters* (Beacon's documented media type, the same parameter names as
  Zabbix's official Event-Driven Ansible media type): `event_id`, `event_value` (1 problem,
  0 recovery), `event_nseverity`, `host_host`, `trigger_id`, `event_tags`, ... Dedup key
  `event:<event_id>`: `{EVENT.ID}` is the problem's id in problem, update and recovery
  messages alike.
- *Grafana OnCall media type* (official): `alert_uid` (`{EVENT.ID}`), `state`
  alerting/ok, `title`, `message` (the default message template, whose `Key: value` lines
  and "started at"/"resolved at" line are read). Dedup key `event:<alert_uid>`.
- *Zulip media type*: `status` PROBLEM/OK, `hostname`, `trigger`, `severity`, `item`,
  `link`. Its link carries the trigger id, the only id stable across states: dedup key
  `trigger:<triggerid>`.

Zabbix renders dates in the server's time zone: the adapter setting `timezone` (default
UTC) says which. A body whose id or state is still a macro (`{EVENT.ID}`) is a media
type's parameter list or its "Test" dialog's defaults, not an alert, and is refused; other
fields left as macros (Zabbix leaves those it cannot resolve in this message) are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import BaseModel, ConfigDict, field_validator

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import (
    find_placeholder,
    joined,
    lookup,
    make_event,
    parse_time,
    refuse_placeholder,
    validate,
)
from .errors import AdapterError

SOURCE_TYPE = "zabbix"
PARAMS = "Zabbix webhook with Beacon's media-type parameters"
ONCALL = "Zabbix Grafana OnCall media type"
ZULIP = "Zabbix Zulip media type"
FORMATS = f"{PARAMS}, {ONCALL} or {ZULIP}"

# {EVENT.NSEVERITY}: 0 Not classified, 1 Information, 2 Warning, 3 Average, 4 High, 5 Disaster.
# Average sits with High, as PagerDuty's and OnCall's Zabbix integrations rank it.
NSEVERITY: dict[str, Severity] = {
    "0": Severity.INFO,
    "1": Severity.INFO,
    "2": Severity.WARNING,
    "3": Severity.HIGH,
    "4": Severity.HIGH,
    "5": Severity.CRITICAL,
}
SEVERITY_NAME: dict[str, Severity] = {
    "Not classified": Severity.INFO,
    "Information": Severity.INFO,
    "Warning": Severity.WARNING,
    "Average": Severity.HIGH,
    "High": Severity.HIGH,
    "Disaster": Severity.CRITICAL,
}
EVENT_VALUE: dict[str, EventStatus] = {"1": EventStatus.FIRING, "0": EventStatus.RESOLVED}
ONCALL_STATE: dict[str, EventStatus] = {
    "alerting": EventStatus.FIRING,
    "ok": EventStatus.RESOLVED,
}
# Zabbix's own scripts read these {TRIGGER.STATUS}/{EVENT.STATUS} values as a recovery.
_RECOVERED = re.compile(r"^RECOVER(Y|ED)?$|^OK$|^Resolved.*", re.IGNORECASE)
_MACRO = re.compile(r"\{(?:\$[A-Z0-9_.]+|[A-Z][A-Z0-9_]*\.[A-Z0-9_.]+)\}")
_UNKNOWN = "*UNKNOWN*"  # what Zabbix renders for a macro with no value in this message
_MESSAGE_LINE = re.compile(r"^([A-Z][A-Za-z ]{1,40}): (.*)$", re.MULTILINE)
_MESSAGE_TIME = re.compile(
    r"(?:started|resolved) at (\d{1,2}:\d{2}:\d{2}) on (\d{4}\.\d{2}\.\d{2})"
)

Scalar = str | int | float


class Settings(BaseModel):
    """Adapter settings of a Zabbix alert source."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            message = f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)"
            raise ValueError(message) from None
        return value


class _Params(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: Scalar
    event_value: Scalar
    event_nseverity: Scalar | None = None
    event_severity: str | None = None
    event_name: str | None = None
    event_date: str | None = None
    event_time: str | None = None
    event_datetime_timestamp: int | float | None = None
    event_recovery_date: str | None = None
    event_recovery_time: str | None = None
    event_tags: Any = None
    event_source: Scalar | None = None
    event_update_status: Scalar | None = None
    event_url: str | None = None
    acknowledged: str | None = None
    host_host: str | None = None
    host_name: str | None = None
    host_id: Scalar | None = None
    host_ip: str | None = None
    host_port: Scalar | None = None
    host_groups: list[Any] | str | None = None
    trigger_id: Scalar | None = None
    trigger_name: str | None = None
    trigger_description: str | None = None
    operation_data: str | None = None
    monitoring_source: str | None = None
    subject: str | None = None
    message: str | None = None


class _OnCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    alert_uid: Scalar
    state: str
    title: str = ""
    message: str = ""
    link_to_upstream_details: str | None = None


class _Zulip(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    hostname: str = ""
    trigger: str = ""
    severity: str | None = None
    item: str | None = None
    link: str | None = None


# The fields that say which alert and which state: if Zabbix left one of these as a macro,
# the body is a parameter list (or the media type's "Test" dialog defaults), not an alert.
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "params": ("event_id", "event_value"),
    "oncall": ("alert_uid", "state"),
    "zulip": ("status",),
}


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the problem or recovery; an `AdapterError` for macro templates."""
    options = validate(Settings, dict(settings), expected="Zabbix adapter settings")
    document = require_object(delivery.json(expected=FORMATS), expected=FORMATS)
    zone = ZoneInfo(options.timezone)
    if "event_id" in document or "event_value" in document:
        return [_from_params(delivery, _rendered(document, "params"), zone, raw=document)]
    if "alert_uid" in document:
        return [_from_oncall(delivery, _rendered(document, "oncall"), zone, raw=document)]
    if "status" in document and ("trigger" in document or "hostname" in document):
        return [_from_zulip(delivery, _rendered(document, "zulip"), raw=document)]
    raise AdapterError(
        "body: expected the keys event_id and event_value, alert_uid and state, or status "
        f"and trigger ({FORMATS})"
    )


def _rendered(document: dict[str, Any], shape: str) -> dict[str, Any]:
    """`document` without the optional fields Zabbix left as macros.

    Zabbix leaves a macro unresolved where it has no meaning, such as
    `{EVENT.RECOVERY.DATE}` in a problem message, so one media type serves every message
    type: such a field is absent, not wrong. A key field left as a macro is an error.
    """
    for name in KEY_FIELDS[shape]:
        refuse_placeholder(
            document.get(name),
            _MACRO,
            name,
            why="Zabbix did not render this macro, so this is a media type's parameter list "
            "or test defaults, not an alert",
            expected=FORMATS,
        )
    return {name: value for name, value in document.items() if not find_placeholder(value, _MACRO)}


def _text(value: object) -> str | None:
    """A macro's rendered value as text; None when Zabbix had nothing to put there."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", _UNKNOWN) else text


def _from_params(
    delivery: Delivery, document: dict[str, Any], zone: ZoneInfo, *, raw: dict[str, Any]
) -> AlertEvent:
    params = validate(_Params, document, expected=PARAMS)
    event_id = _text(params.event_id)
    if event_id is None:
        raise AdapterError(f"event_id: expected the problem's {{EVENT.ID}}, got nothing ({PARAMS})")
    status = lookup(EVENT_VALUE, _text(params.event_value), field="event_value", expected=PARAMS)
    severity = Severity.CRITICAL
    if _text(params.event_nseverity) is not None:
        severity = lookup(
            NSEVERITY, _text(params.event_nseverity), field="event_nseverity", expected=PARAMS
        )
    elif _text(params.event_severity) is not None:
        severity = lookup(
            SEVERITY_NAME, _text(params.event_severity), field="event_severity", expected=PARAMS
        )
    occurred_at = delivery.received_at
    if status is EventStatus.RESOLVED:
        # {EVENT.DATE} still names the problem's start in a recovery message.
        if params.event_recovery_date and params.event_recovery_time:
            occurred_at = _local_time(
                params.event_recovery_date, params.event_recovery_time, zone, "event_recovery_date"
            )
    elif params.event_datetime_timestamp is not None:
        occurred_at = parse_time(params.event_datetime_timestamp, field="event_datetime_timestamp")
    elif params.event_date and params.event_time:
        occurred_at = _local_time(params.event_date, params.event_time, zone, "event_date")
    groups = params.host_groups
    labels: dict[str, Any] = {
        "event_id": event_id,
        "event_name": params.event_name,
        "event_source": params.event_source,
        "zabbix_severity": params.event_severity,
        "host": params.host_host,
        "host_name": params.host_name,
        "host_id": params.host_id,
        "host_ip": params.host_ip,
        "host_port": params.host_port,
        "host_groups": joined(groups) if isinstance(groups, list) else groups,
        "trigger_id": params.trigger_id,
        "trigger_name": params.trigger_name,
        "operation_data": params.operation_data,
        "acknowledged": params.acknowledged,
        "update": "true" if _text(params.event_update_status) == "1" else None,
        "monitoring_source": params.monitoring_source,
    }
    return make_event(
        expected=PARAMS,
        source_type=SOURCE_TYPE,
        dedup_key=f"event:{event_id}",
        status=status,
        severity=severity,
        summary=params.event_name or params.trigger_name or params.subject or f"event {event_id}",
        details=params.trigger_description or params.message or "",
        labels={**_present(labels), **_tags(params.event_tags)},
        links=[params.event_url] if params.event_url else [],
        occurred_at=occurred_at,
        received_at=delivery.received_at,
        raw=raw,
    )


def _from_oncall(
    delivery: Delivery, document: dict[str, Any], zone: ZoneInfo, *, raw: dict[str, Any]
) -> AlertEvent:
    alert = validate(_OnCall, document, expected=ONCALL)
    uid = _text(alert.alert_uid)
    if uid is None:
        raise AdapterError(
            f"alert_uid: expected the problem's {{EVENT.ID}}, got nothing ({ONCALL})"
        )
    status = lookup(ONCALL_STATE, alert.state.lower(), field="state", expected=ONCALL)
    lines = dict(_MESSAGE_LINE.findall(alert.message))
    severity = SEVERITY_NAME.get(lines.get("Severity", "").strip(), Severity.CRITICAL)
    stamp = _MESSAGE_TIME.search(alert.message)
    occurred_at = (
        _local_time(stamp.group(2), stamp.group(1), zone, "message")
        if stamp
        else delivery.received_at
    )
    link = alert.link_to_upstream_details
    labels = {
        "event_id": uid,
        "event_name": alert.title,
        "host": lines.get("Host"),
        "zabbix_severity": lines.get("Severity"),
        "operation_data": lines.get("Operational data"),
        "trigger_id": _query_value(link, "triggerid"),
    }
    return make_event(
        expected=ONCALL,
        source_type=SOURCE_TYPE,
        dedup_key=f"event:{uid}",
        status=status,
        severity=severity,
        summary=alert.title or f"event {uid}",
        details=alert.message,
        labels=_present(labels),
        links=[link] if link else [],
        occurred_at=occurred_at,
        received_at=delivery.received_at,
        raw=raw,
    )


def _from_zulip(delivery: Delivery, document: dict[str, Any], *, raw: dict[str, Any]) -> AlertEvent:
    alert = validate(_Zulip, document, expected=ZULIP)
    if alert.status.upper() == "PROBLEM":
        status = EventStatus.FIRING
    elif _RECOVERED.match(alert.status):
        status = EventStatus.RESOLVED
    else:
        raise AdapterError(f"status: expected 'PROBLEM' or 'OK', got {alert.status!r} ({ZULIP})")
    trigger_id = _query_value(alert.link, "triggerid")
    # Without the link only names are left, and a trigger's name may differ between states.
    dedup_key = (
        f"trigger:{trigger_id}" if trigger_id else f"trigger:{alert.hostname}/{alert.trigger}"
    )
    severity = Severity.CRITICAL
    if alert.severity:
        severity = lookup(SEVERITY_NAME, alert.severity, field="severity", expected=ZULIP)
    labels = {
        "host": alert.hostname,
        "zabbix_severity": alert.severity,
        "trigger_name": alert.trigger,
        "trigger_id": trigger_id,
        "event_id": _query_value(alert.link, "eventid"),
        "item": alert.item,
    }
    return make_event(
        expected=ZULIP,
        source_type=SOURCE_TYPE,
        dedup_key=dedup_key,
        status=status,
        severity=severity,
        summary=alert.trigger or f"Zabbix problem on {alert.hostname}",
        labels=_present(labels),
        links=[alert.link] if alert.link else [],
        occurred_at=delivery.received_at,
        received_at=delivery.received_at,
        raw=raw,
    )


def _local_time(date: str, time: str, zone: ZoneInfo, field: str) -> datetime:
    """A Zabbix `{EVENT.DATE}` (2024.03.01) and `{EVENT.TIME}` (13:02:06) in the server's zone."""
    try:
        naive = datetime.strptime(f"{date.strip()} {time.strip()}", "%Y.%m.%d %H:%M:%S")
    except ValueError:
        raise AdapterError(
            f"{field}: expected a Zabbix date and time like 2024.03.01 13:02:06, "
            f"got {date!r} {time!r}"
        ) from None
    return parse_time(naive.replace(tzinfo=zone).isoformat(), field=field)


def _query_value(url: str | None, name: str) -> str | None:
    if not url:
        return None
    try:
        values = parse_qs(urlsplit(url).query).get(name)
    except ValueError:  # not a URL (an unbalanced "[" in the host, say): no id in it
        return None
    return values[0] if values else None


def _tags(tags: Any) -> dict[str, str]:
    """`{EVENT.TAGSJSON}` ([{tag, value}]) or the EDA script's {tag: [values]} as `tag.<name>`."""
    if isinstance(tags, str):
        try:
            tags = orjson.loads(tags)
        except orjson.JSONDecodeError:
            return {}
    found: dict[str, list[str]] = {}
    if isinstance(tags, dict):
        for name, values in tags.items():
            items = values if isinstance(values, list) else [values]
            found.setdefault(str(name), []).extend(str(v) for v in items if v is not None)
    elif isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and isinstance(tag.get("tag"), str):
                value = tag.get("value")
                found.setdefault(tag["tag"], []).extend([] if value is None else [str(value)])
    # A tag without a value still says something: "true", as for every tool's bare tags.
    return {f"tag.{name}": joined(values) or "true" for name, values in found.items()}


def _present(labels: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in labels.items() if _text(value) is not None}
