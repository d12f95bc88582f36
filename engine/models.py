"""Domain vocabulary shared by every package: statuses, severities and the normalised event.

`rules` and the adapters import only this module of `engine` (DESIGN.md, "Imports point
one way"), so it holds no store or settings code.
"""

from __future__ import annotations

from collections.abc import Mapping
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

#: The status vocabulary every surface uses: what people read (pages, emails, SMS) ...
STATUS_NAME: dict[ServiceStatus, str] = {
    ServiceStatus.OPERATIONAL: "Operational",
    ServiceStatus.UNDER_MAINTENANCE: "Under Maintenance",
    ServiceStatus.DEGRADED: "Degraded Performance",
    ServiceStatus.PARTIAL_OUTAGE: "Partial Outage",
    ServiceStatus.MAJOR_OUTAGE: "Major Outage",
}
#: ... and Statuspage's component statuses (the v2 API, outbound webhooks), which name
#: `degraded` differently.
COMPONENT_STATUS: dict[ServiceStatus, str] = {
    ServiceStatus.OPERATIONAL: "operational",
    ServiceStatus.UNDER_MAINTENANCE: "under_maintenance",
    ServiceStatus.DEGRADED: "degraded_performance",
    ServiceStatus.PARTIAL_OUTAGE: "partial_outage",
    ServiceStatus.MAJOR_OUTAGE: "major_outage",
}


def status_name(status: ServiceStatus | str) -> str:
    """A status as people read it ("Partial Outage")."""
    return STATUS_NAME[ServiceStatus(status)]


def component_status(status: ServiceStatus | str) -> str:
    """A status as Statuspage's component status ("degraded_performance")."""
    return COMPONENT_STATUS[ServiceStatus(status)]


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


# --- input vocabulary: the patterns of keys, slugs and names, and pydantic errors in words ---
# The config file, the admin API and the adapters' settings share them.

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# N from 1 to 1,000,000 (engine.sources.MAX_RATE_COUNT: the limiter's integers stay exact).
RATE_LIMIT_PATTERN = r"^([1-9][0-9]{0,5}|1000000)/(s|m|h)$"
DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"

SERVICE_REF_PATTERN = r"^([a-z0-9][a-z0-9_.-]{0,63}/)?[a-z0-9][a-z0-9_.-]{0,63}$"

#: What each pattern asks for, in words: pydantic's own message quotes the regular expression.
PATTERN_WORDS = {
    KEY_PATTERN: "a key: 1 to 64 lower-case letters, digits, '_', '.' or '-', starting with "
    "a letter or digit",
    SLUG_PATTERN: "a slug: 1 to 63 lower-case letters, digits or '-', starting with a letter "
    "or digit",
    RATE_LIMIT_PATTERN: "a rate limit: N/s, N/m or N/h with N from 1 to 1000000, such as 50/s",
    DOMAIN_PATTERN: "a lower-case host name such as status.example.com",
    SERVICE_REF_PATTERN: "a service key, or team/key on a page several teams manage",
}


def readable(err: Mapping[str, Any]) -> str:
    """A pydantic error's message for people: what a pattern means rather than the regular
    expression, and "must not be empty" for an empty text (pydantic says "at least 1 item")."""
    kind = err.get("type")
    got = err.get("input")
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        if pattern in PATTERN_WORDS:
            shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:56] + "...'"
            return f"{shown} is not {PATTERN_WORDS[pattern]}"
    if kind in ("string_too_short", "too_short") and got == "":
        return "must not be empty (leave the field out for none)"
    return str(err.get("msg", "")).removeprefix("Value error, ")
