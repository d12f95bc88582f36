"""Domain vocabulary shared by every package: statuses, severities and the normalised event.

`rules` and the adapters import only this module of `engine` (DESIGN.md, "Imports point
one way"), so it holds no store or settings code.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class ServiceStatus(StrEnum):
    """A service's status, best first: `worst()` relies on this order."""

    OPERATIONAL = "operational"
    UNDER_MAINTENANCE = "under_maintenance"
    DEGRADED = "degraded"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"

    @property
    def rank(self) -> int:
        return _STATUS_ORDER.index(self)


_STATUS_ORDER = list(ServiceStatus)


def worst_status(statuses: Any) -> ServiceStatus:
    """The worst of `statuses` (an iterable of ServiceStatus or str); operational if empty."""
    worst = ServiceStatus.OPERATIONAL
    for status in statuses:
        candidate = ServiceStatus(status)
        if candidate.rank > worst.rank:
            worst = candidate
    return worst


class EventStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    """Normalised severity, most severe first."""

    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"


class IncidentStatus(StrEnum):
    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"
    POSTMORTEM = "postmortem"


#: The statuses of an incident that is still open (shown as active, counted in statuses).
OPEN_INCIDENT = (
    IncidentStatus.INVESTIGATING,
    IncidentStatus.IDENTIFIED,
    IncidentStatus.MONITORING,
)


class Impact(StrEnum):
    """Statuspage's incident impact, least first."""

    NONE = "none"
    MAINTENANCE = "maintenance"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


IMPACT_OF_STATUS: dict[ServiceStatus, Impact] = {
    ServiceStatus.OPERATIONAL: Impact.NONE,
    ServiceStatus.UNDER_MAINTENANCE: Impact.MAINTENANCE,
    ServiceStatus.DEGRADED: Impact.MINOR,
    ServiceStatus.PARTIAL_OUTAGE: Impact.MAJOR,
    ServiceStatus.MAJOR_OUTAGE: Impact.CRITICAL,
}


class MaintenanceStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    VERIFYING = "verifying"
    COMPLETED = "completed"


class OnEnd(StrEnum):
    REPLAY = "replay"
    DROP = "drop"


class PageType(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class Role(StrEnum):
    ADMIN = "admin"
    RESPONDER = "responder"
    STAKEHOLDER = "stakeholder"


class SubscriberChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    USER = "user"


class AlertEvent(BaseModel):
    """One alert in one state, as an adapter normalises it (DESIGN.md, "Normalised alert event").

    `dedup_key` is stable from firing to resolved for the same alert; `occurred_at` is the
    tool's own time for this state (a firing's start, a resolve's end), `received_at` is when
    Beacon got the delivery. `test` marks a tool's test or ping delivery: acknowledged, never
    evaluated. `delivery_id` is the tool's own id for the delivery (PagerDuty `event.id`,
    SNS `MessageId`), used to recognise retried deliveries.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = ""
    source: str = ""
    source_type: str
    dedup_key: str = Field(min_length=1, max_length=512)
    status: EventStatus
    severity: Severity = Severity.CRITICAL
    summary: str = Field(default="", max_length=2000)
    details: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    links: list[str] = Field(default_factory=list)
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    raw: Any = None
    test: bool = False
    delivery_id: str | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_are_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): label_value(v) for k, v in value.items() if v is not None}
        return value

    def with_ids(self, *, id: str, source: str) -> AlertEvent:
        """A copy stamped with the store's id and the alert source's key."""
        return self.model_copy(update={"id": id, "source": source})


def label_value(value: Any) -> str:
    """`value` as label text: `true`/`false` for booleans, numbers as Python writes them,
    other values as JSON (a string where orjson refuses, e.g. integers past 64 bits)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    import orjson

    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


def utc(dt: datetime) -> datetime:
    """`dt` as an aware UTC datetime; naive values are taken to be UTC already."""
    from datetime import UTC

    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
