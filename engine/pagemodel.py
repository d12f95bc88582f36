"""The shapes of a status page's contents: `PageSnapshot` and what it holds.

Plain frozen data, read by `engine.pagedata` and rendered by the page's documents (HTML,
the Statuspage v2 JSON, feeds, badge). Field names follow the store and, where they
surface in the v2 API, Statuspage's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import uptime
from .models import OPEN_INCIDENT, Impact, IncidentStatus, ServiceStatus
from .status import PageStatus

#: Incident history shown on the page itself; older ones are in the archive.
HISTORY_DAYS = 14
#: Statuspage's `incidents.json` and `scheduled-maintenances.json` list the 50 newest.
RECENT_LIMIT = 50


def linked_domain(custom_domain: str | None, verified_at: object) -> str | None:
    """The custom domain links may name: only once DNS showed it is the page's
    (`domain_verified_at`). Before that Beacon does not serve the page there, and a link to
    it would send readers (and subscribers' emails) to a host someone else may hold."""
    return custom_domain if custom_domain and verified_at is not None else None


def page_address(
    slug: str, custom_domain: str | None, *, base_url: str, pages_domain: str = ""
) -> str:
    """Where a page is read, for every link Beacon makes to it (no trailing slash): its
    custom domain, which serves the page at the root over TLS; else its own host under the
    pages domain (`<slug>.<BEACON_PAGES_DOMAIN>`, same scheme and port as the base URL);
    else `/p/<slug>` under the base URL."""
    if custom_domain:
        return f"https://{custom_domain}"
    base = base_url.rstrip("/")
    if pages_domain:
        parts = urlsplit(base)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme or 'https'}://{slug}.{pages_domain}{port}"
    return f"{base}/p/{slug}"


@dataclass(frozen=True)
class PageInfo:
    id: int
    public_id: str
    slug: str
    name: str
    type: str
    active: bool
    time_zone: str
    custom_domain: str | None
    #: sha256 of the logo and favicon assets (their URLs are content-hashed), or None.
    logo_hash: str | None
    favicon_hash: str | None
    hide_uptime: bool
    team_ids: tuple[int, ...]
    #: The page's public address: `https://<custom domain>`, else `<base url>/p/<slug>`.
    url: str
    created_at: datetime
    updated_at: datetime
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Group:
    id: int
    public_id: str
    name: str
    position: int
    status: ServiceStatus
    created_at: datetime
    updated_at: datetime
    #: Public ids of its components, in page order.
    component_ids: tuple[str, ...]


@dataclass(frozen=True)
class Component:
    """A service as it appears on one page (a `page_services` row)."""

    id: int
    public_id: str
    service_id: int
    service_key: str
    name: str
    description: str
    status: ServiceStatus
    #: The group's public id and name, or None for an ungrouped component.
    group_id: str | None
    group_name: str | None
    position: int
    created_at: datetime
    updated_at: datetime
    #: When the service began (the start of its uptime history).
    service_created_at: datetime
    uptime_days: tuple[uptime.UptimeDay, ...] = ()
    #: Uptime over `uptime_days`, None without data.
    uptime: float | None = None


@dataclass(frozen=True)
class AffectedComponent:
    code: str
    name: str
    old_status: ServiceStatus | None
    new_status: ServiceStatus


@dataclass(frozen=True)
class IncidentUpdate:
    id: int
    public_id: str
    status: str
    body: str
    display_at: datetime
    created_at: datetime
    updated_at: datetime
    affected: tuple[AffectedComponent, ...] | None
    deliver_notifications: bool


@dataclass(frozen=True)
class Incident:
    id: int
    public_id: str
    title: str
    status: IncidentStatus
    #: The effective impact: the override when set, else the peak impact.
    impact: Impact
    started_at: datetime
    created_at: datetime
    updated_at: datetime
    identified_at: datetime | None
    monitoring_at: datetime | None
    resolved_at: datetime | None
    #: Newest first, as Statuspage lists them.
    updates: tuple[IncidentUpdate, ...]
    #: (component public id, impact status) for the affected components on this page.
    impacts: tuple[tuple[str, ServiceStatus], ...]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_INCIDENT

    @property
    def component_ids(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.impacts)


@dataclass(frozen=True)
class MaintenanceUpdate:
    id: int
    public_id: str
    status: str
    body: str
    display_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class Maintenance:
    id: int
    public_id: str
    title: str
    message: str
    #: scheduled | in_progress | completed (Statuspage's maintenance states).
    status: str
    starts_at: datetime
    ends_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    component_ids: tuple[str, ...]
    #: Newest first.
    updates: tuple[MaintenanceUpdate, ...]

    @property
    def is_upcoming(self) -> bool:
        return self.status == "scheduled"

    @property
    def is_active(self) -> bool:
        return self.status == "in_progress"


@dataclass(frozen=True)
class PageSnapshot:
    """A page and everything it shows, as of `generated_at`."""

    page: PageInfo
    status: PageStatus
    groups: tuple[Group, ...]
    #: Every component in page order (grouped components follow their group's order).
    components: tuple[Component, ...]
    #: Open incidents, those of the last `HISTORY_DAYS` days and the `RECENT_LIMIT` newest,
    #: newest first.
    incidents: tuple[Incident, ...]
    #: Upcoming and in-progress maintenances and the `RECENT_LIMIT` newest, soonest last.
    maintenances: tuple[Maintenance, ...]
    generated_at: datetime
    #: The days of the uptime bars, oldest first (calendar days in the page's time zone).
    uptime_days: tuple[date, ...] = ()

    @property
    def open_incidents(self) -> tuple[Incident, ...]:
        return tuple(i for i in self.incidents if i.is_open)

    @property
    def upcoming_maintenances(self) -> tuple[Maintenance, ...]:
        return tuple(
            sorted((m for m in self.maintenances if m.is_upcoming), key=lambda m: m.starts_at)
        )

    @property
    def active_maintenances(self) -> tuple[Maintenance, ...]:
        return tuple(m for m in self.maintenances if m.is_active)

    def history(self, days: int = HISTORY_DAYS) -> tuple[Incident, ...]:
        """Resolved incidents that started within `days` of the snapshot, newest first."""
        since = self.generated_at - timedelta(days=days)
        return tuple(i for i in self.incidents if not i.is_open and i.started_at >= since)

    def component(self, public_id: str) -> Component | None:
        for c in self.components:
            if c.public_id == public_id:
                return c
        return None

    def ungrouped(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.group_id is None)

    def in_group(self, group: Group) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.group_id == group.public_id)

    @property
    def tz(self) -> tzinfo:
        return page_tz(self.page.time_zone)

    def incident_url(self, incident: Incident) -> str:
        """The incident's permalink (Statuspage's `shortlink`)."""
        return f"{self.page.url}/incidents/{incident.public_id}"


def page_tz(name: str) -> tzinfo:
    """The page's time zone; an unknown name falls back to UTC rather than failing a render."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
