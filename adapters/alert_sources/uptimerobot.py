"""UptimeRobot webhook alert contacts: query string (GET), POST form, or "Send as JSON".

The body is a template of `*variables*` the user writes, so field names vary: camelCase as
UptimeRobot names them (`monitorFriendlyName`) and snake_case (`monitor_friendly_name`) are
both read. Variables that do not apply arrive literally (`*alertFriendlyDuration*` on a Down
alert) and are treated as absent; a delivery whose `alertType` is still `*alertType*` is the
pasted template, not an alert, and is refused. Names arrive HTML-entity-encoded at times
(`Test &#40;staging&#41;`) and are decoded.

`alertType` 1 (Down) fires and 2 (Up) resolves, keyed `monitor:<monitorID>`; 3 (SSL expiry)
and unknown types fire at info severity under their own key so they never end a Down alert.
`monitorAlertContacts` lists contact URLs, Beacon's own secret one among them, so it is
neither a label nor kept in `raw`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import is_star_placeholder, make_event, parse_time, text_labels
from .errors import AdapterError

SOURCE_TYPE = "uptimerobot"
FORMAT = "UptimeRobot webhook"

# alertType -> (status, severity, dedup key suffix)
ALERT_TYPES: dict[str, tuple[EventStatus, Severity, str]] = {
    "1": (EventStatus.FIRING, Severity.CRITICAL, ""),
    "2": (EventStatus.RESOLVED, Severity.CRITICAL, ""),
    "3": (EventStatus.FIRING, Severity.INFO, ":ssl"),
}
FRIENDLY_TYPES = {"down": "1", "up": "2"}
SECRET_FIELDS = frozenset({"monitoralertcontacts"})


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the monitor's new state."""
    original = _fields(delivery)
    fields = {_canonical(k): v for k, v in original.items()}
    if fields and all(is_star_placeholder(v) for v in fields.values()):
        raise AdapterError(
            "every field is an unreplaced *variable*: this is the template, not an alert "
            f"({FORMAT})"
        )
    values = {k: _value(v) for k, v in fields.items() if not is_star_placeholder(v)}
    alert_type = _alert_type(fields, values)
    status, severity, suffix = ALERT_TYPES.get(
        alert_type, (EventStatus.FIRING, Severity.INFO, f":type-{alert_type}")
    )
    monitor_id = values.get("monitorid")
    url = values.get("monitorurl")
    name = values.get("monitorfriendlyname")
    if monitor_id:
        key = f"monitor:{monitor_id}"
    elif url:
        key = f"url:{url}"
    elif name:
        key = f"name:{name}"
    else:
        raise AdapterError(
            f"monitorID: missing, and no monitorURL or monitorFriendlyName either ({FORMAT})"
        )
    details = values.get("alertdetails", "")
    when = values.get("alertdatetime")
    occurred = parse_time(_unix(when), field="alertDateTime") if when else delivery.received_at
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=key + suffix,
            status=status,
            severity=severity,
            summary=": ".join(p for p in (name, details) if p) or f"alert type {alert_type}",
            details=details,
            labels=text_labels(
                monitor_id=monitor_id,
                monitor_name=name,
                monitor_url=url,
                alert_type=alert_type,
                alert_type_name=values.get("alerttypefriendlyname"),
                alert_duration=values.get("alertduration"),
                alert_friendly_duration=values.get("alertfriendlyduration"),
                ssl_expiry_date=values.get("sslexpirydate"),
                ssl_expiry_days_left=values.get("sslexpirydaysleft"),
            ),
            links=[url] if url and url.startswith(("http://", "https://")) else [],
            occurred_at=occurred,
            received_at=delivery.received_at,
            raw={k: v for k, v in original.items() if _canonical(k) not in SECRET_FIELDS},
        )
    ]


def _fields(delivery: Delivery) -> dict[str, Any]:
    if delivery.body.lstrip().startswith(b"{"):
        return require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    fields = delivery.fields()
    if not fields:
        raise AdapterError(
            f"expected query-string, form or JSON fields such as monitorID and alertType ({FORMAT})"
        )
    return fields


def _canonical(name: str) -> str:
    return name.replace("_", "").lower()


def _value(value: Any) -> str:
    if isinstance(value, str):
        return html.unescape(value).strip()
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise AdapterError(f"expected string or number field values, got {value!r:.40} ({FORMAT})")
    return str(value)


def _alert_type(fields: Mapping[str, Any], values: Mapping[str, str]) -> str:
    if is_star_placeholder(fields.get("alerttype")):
        raise AdapterError(
            f"alertType: unreplaced placeholder {fields['alerttype']!r}: "
            f"expected 1 (down), 2 (up) or 3 (SSL expiry) ({FORMAT})"
        )
    alert_type = values.get("alerttype")
    if alert_type:
        if not (alert_type.isascii() and alert_type.isdigit()):
            raise AdapterError(
                f"alertType: expected 1 (down), 2 (up) or 3 (SSL expiry), "
                f"got {alert_type[:20]!r} ({FORMAT})"
            )
        return alert_type
    friendly = values.get("alerttypefriendlyname", "").lower()
    if friendly in FRIENDLY_TYPES:
        return FRIENDLY_TYPES[friendly]
    raise AdapterError(
        f"alertType: missing, and alertTypeFriendlyName is not Down or Up ({FORMAT})"
    )


def _unix(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise AdapterError(f"alertDateTime: expected Unix seconds, got {value[:20]!r} ({FORMAT})")
    return int(value)
