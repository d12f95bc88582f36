"""Datadog "Webhooks" integration: a custom JSON payload of `$VARIABLES`.

Datadog's default payload carries neither the transition nor a key that links a trigger to
its recovery, so Beacon asks for a custom payload (see docs/alert-sources.md). Field names
are the variables' names in lower case (`alert_transition` for `$ALERT_TRANSITION`), with
the aliases real templates use (`title` for `$EVENT_TITLE`, `event_tags` for `$TAGS`, ...).
A body whose fields are still `$VARIABLES` is a template pasted as a body and is refused.

Firing or resolved: `alert_transition` (Triggered, Re-Triggered, Warn, Re-Warn, No Data,
Re-No Data, Renotify fire; Recovered resolves), else `alert_type` `success`, else the
title's `[Recovered ...]` prefix. Fields named like credentials (`secret`, `token`) are
left out of `raw`. Dedup key, best first: `alert_cycle_key`, `aggreg_key`,
`alert_id` with `alert_scope`, and last the title without its transition prefix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import make_event, parse_time, refuse_dollar_variable, text_labels
from .errors import AdapterError

SOURCE_TYPE = "datadog"
FORMAT = "Datadog webhook (custom payload)"

TRANSITIONS: dict[str, EventStatus] = {
    "triggered": EventStatus.FIRING,
    "re-triggered": EventStatus.FIRING,
    "warn": EventStatus.FIRING,
    "re-warn": EventStatus.FIRING,
    "no data": EventStatus.FIRING,
    "re-no data": EventStatus.FIRING,
    "renotify": EventStatus.FIRING,
    "recovered": EventStatus.RESOLVED,
}
# Warnings and missing data are never more than warnings, whatever the monitor's priority.
TRANSITION_SEVERITY: dict[str, Severity] = {
    "warn": Severity.WARNING,
    "re-warn": Severity.WARNING,
    "no data": Severity.WARNING,
    "re-no data": Severity.WARNING,
}
PRIORITY_SEVERITY: dict[str, Severity] = {
    "p1": Severity.CRITICAL,
    "p2": Severity.HIGH,
    "p3": Severity.WARNING,
    "p4": Severity.INFO,
    "p5": Severity.INFO,
}
ALERT_TYPE_SEVERITY: dict[str, Severity] = {
    "error": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "info": Severity.INFO,
}

# The field names a template may use for one variable, preferred first.
ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("alert_title", "title", "event_title"),
    "body": ("text_only_msg", "body", "event_msg", "message"),
    "date": ("date", "date_posix", "last_updated"),
    "tags": ("tags", "event_tags"),
    "event_id": ("event_id", "id"),
}

SECRET_FIELDS = frozenset({"secret", "token", "password", "api_key", "apikey"})

_TITLE = re.compile(r"^\[(?P<transition>[A-Za-z][A-Za-z -]*?)(?: on (?P<scope>\{.*?\}))?\]\s*")


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the monitor's transition."""
    document = _document(delivery)
    refuse_dollar_variable(document, template="payload template", expected=FORMAT)
    fields = _flatten(document)
    title = _pick(fields, "title")
    match = _TITLE.match(title)
    transition_text = fields.get("alert_transition") or (match["transition"] if match else "")
    transition = transition_text.lower()
    status = _status(transition_text, fields.get("alert_type", "").lower())
    tags = _tags(_pick(fields, "tags"))
    scope = fields.get("alert_scope") or (
        match["scope"].strip("{}") if match and match["scope"] else ""
    )
    date = _pick(fields, "date")
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=_dedup_key(fields, title, match, scope),
            status=status,
            severity=_severity(transition, fields),
            summary=title or fields.get("alert_id") or "Datadog alert",
            details=_pick(fields, "body"),
            labels={
                **text_labels(
                    monitor_id=fields.get("alert_id"),
                    scope=scope,
                    host=fields.get("hostname") or tags.get("tag.host"),
                    metric=fields.get("alert_metric"),
                    priority=fields.get("alert_priority"),
                    alert_type=fields.get("alert_type"),
                    transition=transition_text,
                    event_type=fields.get("event_type"),
                    org_id=fields.get("org_id"),
                    org_name=fields.get("org_name"),
                ),
                **tags,
            },
            links=[fields["link"]] if fields.get("link", "").startswith("http") else [],
            occurred_at=_time(date) if date else delivery.received_at,
            received_at=delivery.received_at,
            # Templates sometimes carry a shared secret; it has done its job by now.
            raw={k: v for k, v in document.items() if k.lower() not in SECRET_FIELDS},
        )
    ]


def _document(delivery: Delivery) -> dict[str, Any]:
    # "Encode as form" sends the payload's fields form-encoded instead of as JSON.
    if delivery.form:
        return dict(delivery.form)
    if delivery.body.strip() and not delivery.body.lstrip().startswith(b"{"):
        fields = delivery.fields()
        if fields:
            return dict(fields)
    return require_object(delivery.json(expected=FORMAT), expected=FORMAT)


def _text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, (bool, list)):
        raise AdapterError(f"{name}: expected a string, got {type(value).__name__} ({FORMAT})")
    return str(value)


def _pick(fields: Mapping[str, str], variable: str) -> str:
    for name in ALIASES[variable]:
        if fields.get(name):
            return fields[name]
    return ""


def _status(transition: str, alert_type: str) -> EventStatus:
    if transition:
        if transition.lower() not in TRANSITIONS:
            known = ", ".join(sorted(TRANSITIONS))
            raise AdapterError(
                f"alert_transition: expected one of {known}, got {transition[:30]!r} ({FORMAT})"
            )
        return TRANSITIONS[transition.lower()]
    if alert_type == "success":
        return EventStatus.RESOLVED
    if alert_type in ALERT_TYPE_SEVERITY:
        return EventStatus.FIRING
    raise AdapterError(
        "alert_transition: missing, and neither alert_type nor a '[Triggered ...]' title tells "
        f'firing from recovered: add "alert_transition": "$ALERT_TRANSITION" ({FORMAT})'
    )


def _severity(transition: str, fields: Mapping[str, str]) -> Severity:
    if transition in TRANSITION_SEVERITY:
        return TRANSITION_SEVERITY[transition]
    priority = fields.get("alert_priority", "").lower()
    if priority in PRIORITY_SEVERITY:
        return PRIORITY_SEVERITY[priority]
    return ALERT_TYPE_SEVERITY.get(fields.get("alert_type", "").lower(), Severity.CRITICAL)


def _dedup_key(fields: Mapping[str, str], title: str, match: Any, scope: str) -> str:
    if fields.get("alert_cycle_key"):
        return f"cycle:{fields['alert_cycle_key']}"
    if fields.get("aggreg_key"):
        return f"aggreg:{fields['aggreg_key']}"
    if fields.get("alert_id"):
        return f"monitor:{fields['alert_id']}" + (f":{scope}" if scope else "")
    if title:
        # The title minus its "[Triggered on {scope}] " prefix is the same on trigger and
        # recovery: the monitor's name, made per-group by the scope.
        name = title[match.end() :] if match else title
        return f"title:{name}" + (f":{scope}" if scope else "")
    raise AdapterError(
        "alert_cycle_key: missing, and no aggreg_key, alert_id or title to key the alert on: "
        f'add "alert_cycle_key": "$ALERT_CYCLE_KEY" ({FORMAT})'
    )


def _tags(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for tag in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = tag.partition(":")
        key = f"tag.{name}"
        value = value if sep else "true"
        # Datadog repeats a key for multi-valued tags (security-group:a,security-group:b).
        labels[key] = f"{labels[key]},{value}" if key in labels else value
    return labels


def _time(value: str) -> Any:
    try:
        number: float | str = float(value)
    except ValueError:
        number = value  # $LAST_UPDATED and hand-made templates send RFC 3339
    return parse_time(number, field="date")


def _flatten(document: Mapping[str, Any]) -> dict[str, str]:
    """Fields by lower-case name; one nested level (the default payload's `org`) flattens to
    `org_id`, `org_name`."""
    fields: dict[str, str] = {}
    for name, value in document.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if not isinstance(inner_value, dict):
                    fields[f"{name}_{inner}".lower()] = _text(f"{name}.{inner}", inner_value)
        else:
            fields[name.lower()] = _text(name, value)
    return fields
