"""A service's effective status, and the page roll-up of Statuspage's indicator and wording.

Effective status (DESIGN.md, "Service"): a manual override while it lasts; otherwise the
worst of the service's open rule claims, its open incidents' impact on it, and
`under_maintenance` while a maintenance window on it is in progress. `recompute` is called in
the transaction of every change to one of those inputs; it records each change with its
cause (`status_changes`) and emits `pages.dirty` so the affected pages re-render.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import outbox
from .models import OPEN_INCIDENT, Impact, ServiceStatus, worst_status
from .tables import (
    claims,
    incident_services,
    incidents,
    maintenance_services,
    maintenance_windows,
    services,
    status_changes,
    utcnow,
)

PAGES_DIRTY = "pages.dirty"
NOTIFY_COMPONENTS = "notify.component_update"


@dataclass(frozen=True)
class StatusChange:
    service_id: int
    old: ServiceStatus
    new: ServiceStatus


def effective_statuses(
    conn: Connection, service_ids: Sequence[int], now: datetime
) -> dict[int, ServiceStatus]:
    """The effective status of each service, from the store's current inputs."""
    ids = list(service_ids)
    inputs: dict[int, list[str]] = {sid: [] for sid in ids}
    overrides: dict[int, ServiceStatus] = {}
    params = {"ids": ids}

    for row in conn.execute(_OVERRIDES, params):
        if row.override_status and (row.override_until is None or row.override_until > now):
            overrides[row.id] = ServiceStatus(row.override_status)
    for claim in conn.execute(_OPEN_CLAIMS, params):
        inputs[claim.service_id].append(claim.status)
    for impact in conn.execute(_OPEN_IMPACTS, params):
        inputs[impact.service_id].append(impact.impact)
    for held in conn.execute(_IN_MAINTENANCE, params):
        inputs[held.service_id].append(ServiceStatus.UNDER_MAINTENANCE)

    return {sid: overrides.get(sid) or worst_status(inputs[sid]) for sid in ids}


# Built once: every status recompute (each alert that changes a claim) runs them, and
# building them cost more than running them.
_IDS: sa.BindParameter[int] = sa.bindparam("ids", expanding=True)
_OVERRIDES = sa.select(services.c.id, services.c.override_status, services.c.override_until).where(
    services.c.id.in_(_IDS)
)
_OPEN_CLAIMS = (
    sa.select(claims.c.service_id, claims.c.status)
    .where(claims.c.service_id.in_(_IDS))
    .where(claims.c.released_at.is_(None))
)
_OPEN_IMPACTS = (
    sa.select(incident_services.c.service_id, incident_services.c.impact)
    .join(incidents, incidents.c.id == incident_services.c.incident_id)
    .where(incident_services.c.service_id.in_(_IDS))
    .where(incidents.c.status.in_(OPEN_INCIDENT))
)
_IN_MAINTENANCE = (
    sa.select(maintenance_services.c.service_id)
    .join(maintenance_windows, maintenance_windows.c.id == maintenance_services.c.window_id)
    .where(maintenance_services.c.service_id.in_(_IDS))
    .where(maintenance_windows.c.status == "in_progress")
)
_CURRENT = sa.select(services.c.id, services.c.status).where(services.c.id.in_(_IDS))
_SET_STATUS = (
    services.update()
    .where(services.c.id == sa.bindparam("service_id"))
    .values(
        status=sa.bindparam("new_status"),
        status_since=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
    )
)


def recompute(
    conn: Connection,
    service_ids: Iterable[int],
    *,
    cause_kind: str,
    cause: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> list[StatusChange]:
    """Bring the stored status of `service_ids` up to date in the caller's transaction.

    Every service whose status changes gets a `status_changes` row naming `cause_kind`
    (rule, incident, maintenance, override, expiry, user, system) and `cause`; the pages
    showing them are marked dirty through the outbox.
    """
    now = now or utcnow()
    ids = sorted(set(service_ids))
    if not ids:
        return []
    current = {row.id: ServiceStatus(row.status) for row in conn.execute(_CURRENT, {"ids": ids})}
    wanted = effective_statuses(conn, list(current), now)
    changes = [
        StatusChange(sid, current[sid], status)
        for sid, status in wanted.items()
        if status != current[sid]
    ]
    if changes:
        conn.execute(
            _SET_STATUS,
            [{"service_id": c.service_id, "new_status": c.new, "now": now} for c in changes],
        )
    if changes:
        conn.execute(
            status_changes.insert(),
            [
                {
                    "service_id": c.service_id,
                    "old_status": c.old,
                    "new_status": c.new,
                    "cause_kind": cause_kind,
                    "cause": dict(cause or {}),
                    "at": now,
                }
                for c in changes
            ],
        )
        outbox.emit(conn, PAGES_DIRTY, {"service_ids": [c.service_id for c in changes]})
        # Component subscribers hear about every change (workers.fanout).
        outbox.emit(
            conn,
            NOTIFY_COMPONENTS,
            {
                "cause_kind": cause_kind,
                "at": now.isoformat(),
                "changes": [[c.service_id, c.old, c.new] for c in changes],
            },
        )
    return changes


# --- the page roll-up (DESIGN.md, "Statuspage v2 mapping") ---------------------------------

IMPACT_RANK = {
    Impact.NONE: 0,
    Impact.MAINTENANCE: 1,
    Impact.MINOR: 2,
    Impact.MAJOR: 3,
    Impact.CRITICAL: 4,
}
INDICATOR_DESCRIPTION = {
    Impact.MINOR: "Minor Service Outage",
    Impact.MAJOR: "Partial System Outage",
    Impact.CRITICAL: "Major System Outage",
}


@dataclass(frozen=True)
class PageStatus:
    indicator: Impact
    description: str


def page_status(
    service_statuses: Sequence[ServiceStatus], incident_impacts: Iterable[Impact] = ()
) -> PageStatus:
    """Statuspage's indicator and description for a page's services and open incidents."""
    statuses = [ServiceStatus(s) for s in service_statuses]
    total = len(statuses)
    count = {s: statuses.count(s) for s in ServiceStatus}
    major, partial, degraded = (
        count[ServiceStatus.MAJOR_OUTAGE],
        count[ServiceStatus.PARTIAL_OUTAGE],
        count[ServiceStatus.DEGRADED],
    )
    if major and major == total:
        base = PageStatus(Impact.CRITICAL, "Major System Outage")
    elif major or (partial and partial == total):
        base = PageStatus(Impact.MAJOR, "Partial System Outage")
    elif partial:
        base = PageStatus(Impact.MINOR, "Minor Service Outage")
    elif degraded and degraded == total and total >= 2:
        base = PageStatus(Impact.MINOR, "Degraded System Service")
    elif degraded:
        base = PageStatus(Impact.MINOR, "Partially Degraded Service")
    elif count[ServiceStatus.UNDER_MAINTENANCE]:
        base = PageStatus(Impact.MAINTENANCE, "Service Under Maintenance")
    else:
        base = PageStatus(Impact.NONE, "All Systems Operational")

    worst_incident = max(
        (Impact(i) for i in incident_impacts), key=IMPACT_RANK.__getitem__, default=None
    )
    if (
        worst_incident is not None
        and worst_incident in INDICATOR_DESCRIPTION
        and IMPACT_RANK[worst_incident] > IMPACT_RANK[base.indicator]
    ):
        return PageStatus(worst_incident, INDICATOR_DESCRIPTION[worst_incident])
    return base
