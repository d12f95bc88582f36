"""Better Stack Uptime outgoing "Incident" webhooks (a JSON:API incident resource).

`data.attributes.status` Started is firing, Resolved is resolved, Acknowledged is still
firing. Unconfirmed and Validating incidents are Better Stack still checking from other
regions: not alerts yet, so they give no event. The incident id `data.id` is the dedup key.
No real capture of this webhook was available: the shape follows Better Stack's Incidents
API documentation, and unknown attributes are kept in `raw`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import joined, labels_of, lookup, make_event, parse_time, validate

SOURCE_TYPE = "betterstack"
FORMAT = "Better Stack Uptime incident webhook"

STATUS: dict[str, EventStatus | None] = {
    "Started": EventStatus.FIRING,
    "Acknowledged": EventStatus.FIRING,
    "Resolved": EventStatus.RESOLVED,
    "Unconfirmed": None,
    "Validating": None,
}


class _Attributes(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    name: str | None = None
    url: str | None = None
    http_method: str | None = None
    cause: str | None = None
    started_at: str | None = None
    acknowledged_at: str | None = None
    resolved_at: str | None = None
    team_name: str | None = None
    regions: list[Any] = Field(default_factory=list)
    incident_group_id: str | int | None = None


class _Ref(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | int


class _Related(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: _Ref | None = None


class _Incident(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | int
    type: str = "incident"
    attributes: _Attributes
    relationships: dict[str, _Related] = Field(default_factory=dict)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: _Incident


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event per incident change; none while the incident is still unconfirmed."""
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    incident = validate(_Payload, document, expected=FORMAT).data
    attributes = incident.attributes
    status = lookup(STATUS, attributes.status, field="data.attributes.status", expected=FORMAT)
    if status is None:
        return []
    if status is EventStatus.RESOLVED:
        when, field = attributes.resolved_at, "data.attributes.resolved_at"
    else:
        when, field = attributes.started_at, "data.attributes.started_at"
    monitor = incident.relationships.get("monitor")
    labels = {
        "monitor_id": monitor.data.id if monitor and monitor.data else None,
        "monitor_name": attributes.name,
        "monitor_url": attributes.url,
        "http_method": attributes.http_method,
        "cause": attributes.cause,
        "team_name": attributes.team_name,
        "regions": joined(attributes.regions),
        "incident_status": attributes.status,
    }
    name = attributes.name or f"Better Stack incident {incident.id}"
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=f"incident:{incident.id}",
            status=status,
            severity=Severity.CRITICAL,
            summary=f"{name}: {attributes.cause}" if attributes.cause else name,
            labels=labels_of(labels),
            links=[attributes.url] if attributes.url else [],
            occurred_at=parse_time(when, field=field) if when else delivery.received_at,
            received_at=delivery.received_at,
            raw=document,
        )
    ]
