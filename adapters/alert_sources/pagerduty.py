"""PagerDuty Generic Webhooks V3 (webhook subscriptions).

One event per delivery: `{"event": {event_type, occurred_at, data, ...}}`. For incident
events the incident's own `data.status` decides (`triggered` and `acknowledged` fire,
`resolved` resolves), so a late `incident.priority_updated` never reopens a resolved
incident by its name alone; `event_type` decides only when `data.status` is missing.
Events about anything but an incident (services, notes) are acknowledged without an event;
`pagey.ping` (the subscription test) is a test event.

The dedup key is `incident:<data.id>`; the webhook event's own `event.id` (repeated on
retries, and covered by the signature) is the event's `delivery_id`, else the
`X-Webhook-Id` header. The header is not signed: a captured delivery replayed under a new
one would otherwise be taken for a new event.

Signature: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`, the HMAC-SHA256 of the raw body
with the subscription secret; any one match is enough, so a secret can be rotated.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import (
    hex_digest_matches,
    hmac_sha256_hex,
    make_event,
    parse_time,
    split_signatures,
    text_labels,
    validate,
)
from .errors import SignatureError

SOURCE_TYPE = "pagerduty"
FORMAT = "PagerDuty webhook V3"
SIGNATURE_HEADER = "X-PagerDuty-Signature"

INCIDENT_STATUS: dict[str, EventStatus] = {
    "triggered": EventStatus.FIRING,
    "acknowledged": EventStatus.FIRING,
    "resolved": EventStatus.RESOLVED,
}
EVENT_TYPE_STATUS: dict[str, EventStatus] = {
    "incident.triggered": EventStatus.FIRING,
    "incident.reopened": EventStatus.FIRING,
    "incident.acknowledged": EventStatus.FIRING,
    "incident.unacknowledged": EventStatus.FIRING,
    "incident.resolved": EventStatus.RESOLVED,
}
PRIORITY_SEVERITY: dict[str, Severity] = {
    "p1": Severity.CRITICAL,
    "p2": Severity.HIGH,
    "p3": Severity.WARNING,
    "p4": Severity.INFO,
    "p5": Severity.INFO,
}
URGENCY_SEVERITY: dict[str, Severity] = {"high": Severity.CRITICAL, "low": Severity.WARNING}


class Reference(BaseModel):
    """A PagerDuty object reference (`{id, summary, ...}`)."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    summary: str = ""


class Incident(BaseModel):
    """`event.data` of an incident event."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    type: str = "incident"
    status: str | None = None
    title: str = ""
    number: int | None = None
    html_url: str = ""
    incident_key: str | None = None
    urgency: str | None = None
    priority: Reference | None = None
    service: Reference | None = None
    escalation_policy: Reference | None = None
    teams: list[Reference] = Field(default_factory=list)
    assignees: list[Reference] = Field(default_factory=list)


class Event(BaseModel):
    """The one event of a V3 webhook delivery."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    event_type: str
    resource_type: str = ""
    occurred_at: str | None = None
    data: dict[str, Any] | None = None


class Envelope(BaseModel):
    """The V3 webhook body."""

    model_config = ConfigDict(extra="allow")

    event: Event


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """The incident's state as one event; a test event for `pagey.ping`; nothing for events
    about other resources."""
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    event = validate(Envelope, document, expected=FORMAT).event
    delivery_id = event.id or delivery.headers.get("x-webhook-id") or None
    occurred = (
        parse_time(event.occurred_at, field="event.occurred_at")
        if event.occurred_at
        else delivery.received_at
    )
    if event.event_type == "pagey.ping":
        return [
            make_event(
                expected=FORMAT,
                source_type=SOURCE_TYPE,
                dedup_key="pagey.ping",
                status=EventStatus.FIRING,
                severity=Severity.INFO,
                summary=(event.data or {}).get("message", "pagey.ping"),
                labels={"event_type": event.event_type},
                occurred_at=occurred,
                received_at=delivery.received_at,
                raw=document,
                test=True,
                delivery_id=delivery_id,
            )
        ]
    data = event.data or {}
    if not event.event_type.startswith("incident.") or data.get("type", "incident") != "incident":
        return []
    incident = validate(Incident, data, expected=FORMAT, where="event.data")
    status = INCIDENT_STATUS.get(incident.status or "") or EVENT_TYPE_STATUS.get(event.event_type)
    if status is None:
        return []
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=f"incident:{incident.id}",
            status=status,
            severity=_severity(incident),
            summary=incident.title or f"incident {incident.id}",
            labels=_labels(event, incident),
            links=[incident.html_url] if incident.html_url else [],
            occurred_at=occurred,
            received_at=delivery.received_at,
            raw=document,
            delivery_id=delivery_id,
        )
    ]


def _severity(incident: Incident) -> Severity:
    if incident.priority is not None and incident.priority.summary.lower() in PRIORITY_SEVERITY:
        return PRIORITY_SEVERITY[incident.priority.summary.lower()]
    return URGENCY_SEVERITY.get((incident.urgency or "").lower(), Severity.CRITICAL)


def _labels(event: Event, incident: Incident) -> dict[str, str]:
    return text_labels(
        event_type=event.event_type,
        incident_id=incident.id,
        incident_number=incident.number,
        incident_status=incident.status,
        incident_key=incident.incident_key,
        urgency=incident.urgency,
        priority=incident.priority.summary if incident.priority else None,
        service_id=incident.service.id if incident.service else None,
        service_name=incident.service.summary if incident.service else None,
        escalation_policy=incident.escalation_policy.summary
        if incident.escalation_policy
        else None,
        teams=",".join(t.summary for t in incident.teams),
        assignees=",".join(a.summary for a in incident.assignees),
    )


def verify(delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime) -> None:
    """Accept the delivery when any `v1=` signature is the HMAC-SHA256 of the body with
    `secret`; else `SignatureError`. PagerDuty sends no timestamp to check for staleness."""
    header = delivery.headers.get(SIGNATURE_HEADER.lower(), "")
    if not header.strip():
        raise SignatureError(f"missing signature header {SIGNATURE_HEADER}")
    given = split_signatures(header)
    if not given:
        raise SignatureError(f"{SIGNATURE_HEADER}: expected v1=<hex>[,v1=<hex>...]")
    expected = hmac_sha256_hex(secret, delivery.body)
    # Compare every value, not just until the first match, so timing says nothing.
    matches = [hex_digest_matches(expected, value) for value in given]
    if not any(matches):
        raise SignatureError(f"no signature in {SIGNATURE_HEADER} matches")
