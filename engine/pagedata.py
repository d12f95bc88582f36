"""Everything one status page shows, read in one go: the `PageSnapshot` (engine.pagemodel).

The HTML page, the Statuspage v2 JSON documents, the feeds and the badge are all rendered
from a snapshot, so they agree with each other. A snapshot is plain frozen data: it holds no
connection and can be rendered after the transaction that read it has ended. The shapes
are re-exported here, so `from engine.pagedata import PageSnapshot` keeps working.

Which incidents and maintenances a page shows: those of one of the page's managing teams
that affect a service on the page, and those of a managing team that affect no service at
all (a page-wide notice, as on Statuspage).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import uptime
from .errors import NotFoundError
from .models import Impact, IncidentStatus, ServiceStatus, worst_status
from .pagemodel import (
    HISTORY_DAYS,
    OPEN_INCIDENT,
    RECENT_LIMIT,
    AffectedComponent,
    Component,
    Group,
    Incident,
    IncidentUpdate,
    Maintenance,
    MaintenanceUpdate,
    PageInfo,
    PageSnapshot,
    linked_domain,
    page_address,
    page_tz,
)
from .status import page_status
from .tables import (
    assets,
    incident_services,
    incident_updates,
    incidents,
    maintenance_services,
    maintenance_updates,
    maintenance_windows,
    page_groups,
    page_services,
    page_teams,
    services,
    status_pages,
)


def page_id_for_slug(conn: Connection, slug: str) -> int | None:
    return conn.execute(sa.select(status_pages.c.id).where(status_pages.c.slug == slug)).scalar()


def load_page(
    conn: Connection,
    page_id: int,
    now: datetime,
    *,
    base_url: str = "",
    pages_domain: str = "",
    days: int = uptime.DEFAULT_DAYS,
) -> PageSnapshot:
    """The snapshot of page `page_id` as of `now`; NotFoundError if there is no such page.

    `base_url` and `pages_domain` (from Settings) make the page's and incidents' absolute
    URLs (`pagemodel.page_address`).
    """
    page = _page_info(conn, page_id, base_url, pages_domain)
    tz = page_tz(page.time_zone)
    group_rows = conn.execute(
        sa.select(page_groups)
        .where(page_groups.c.page_id == page_id)
        .order_by(page_groups.c.position, page_groups.c.id)
    ).all()
    group_pos = {g.id: (g.position, g.id) for g in group_rows}
    comp_rows = conn.execute(
        sa.select(
            page_services.c.id,
            page_services.c.public_id,
            page_services.c.service_id,
            page_services.c.group_id,
            page_services.c.position,
            page_services.c.created_at,
            page_services.c.updated_at,
            services.c.key,
            services.c.name,
            services.c.description,
            services.c.status,
            services.c.created_at.label("service_created_at"),
            services.c.updated_at.label("service_updated_at"),
        )
        .join(services, services.c.id == page_services.c.service_id)
        .where(page_services.c.page_id == page_id)
    ).all()
    # Grouped components sit where their group sits; ungrouped ones by their own position.
    comp_rows = sorted(
        comp_rows,
        key=lambda r: (
            group_pos.get(r.group_id, (r.position, -1)) if r.group_id else (r.position, -1),
            r.position,
            r.id,
        ),
    )
    groups_by_id = {g.id: g for g in group_rows}
    day_list = uptime.last_days(now, tz, days)
    day_bounds = [uptime.day_bounds(d, tz) for d in day_list]
    window_start = day_bounds[0][0]
    service_ids = [r.service_id for r in comp_rows]
    segments = uptime.load_segments(conn, service_ids, window_start, now)
    day_incidents = _day_incidents(conn, page, service_ids, day_list, day_bounds, now)
    weights = uptime.Weights.from_settings(page.settings.get("uptime_weights"))

    components = []
    for r in comp_rows:
        group = groups_by_id.get(r.group_id) if r.group_id else None
        bars = uptime.daily_uptime(
            segments.get(r.service_id, []),
            day_list,
            tz,
            created_at=r.service_created_at,
            now=now,
            weights=weights,
            bounds=day_bounds,
        )
        bars = [
            _with_incidents(bar, day_incidents.get((r.service_id, bar.day), ())) for bar in bars
        ]
        components.append(
            Component(
                id=r.id,
                public_id=r.public_id,
                service_id=r.service_id,
                service_key=r.key,
                name=r.name,
                description=r.description or "",
                status=ServiceStatus(r.status),
                group_id=group.public_id if group else None,
                group_name=group.name if group else None,
                position=r.position,
                created_at=r.created_at,
                updated_at=max(r.updated_at, r.service_updated_at),
                service_created_at=r.service_created_at,
                uptime_days=tuple(bars),
                uptime=uptime.overall(bars),
            )
        )

    groups = []
    for g in group_rows:
        members = [c for c in components if c.group_id == g.public_id]
        groups.append(
            Group(
                id=g.id,
                public_id=g.public_id,
                name=g.name,
                position=g.position,
                status=worst_status(c.status for c in members),
                created_at=g.created_at,
                updated_at=max([g.updated_at, *(c.updated_at for c in members)]),
                component_ids=tuple(c.public_id for c in members),
            )
        )

    by_service = {c.service_id: c for c in components}
    found = _incidents(conn, page, by_service, now)
    maints = _maintenances(conn, page, by_service)
    status = page_status([c.status for c in components], [i.impact for i in found if i.is_open])
    return PageSnapshot(
        page=page,
        status=status,
        groups=tuple(groups),
        components=tuple(components),
        incidents=found,
        maintenances=maints,
        generated_at=now,
        uptime_days=tuple(day_list),
    )


def load_incidents(
    conn: Connection,
    page_id: int,
    *,
    before: datetime | None = None,
    since: datetime | None = None,
    limit: int = RECENT_LIMIT,
) -> tuple[Incident, ...]:
    """The page's incidents (the archive), newest first: those started before `before` and
    at or after `since`, at most `limit`."""
    page = _page_info(conn, page_id)
    by_service = _components_by_service(conn, page_id)
    return _load_incidents(
        conn, page, by_service, _page_incident_ids(conn, page, by_service, before, since, limit)
    )


def load_incident(conn: Connection, page_id: int, public_id: str) -> Incident | None:
    """One incident of the page by its public id (the permalink), or None."""
    page = _page_info(conn, page_id)
    by_service = _components_by_service(conn, page_id)
    row = conn.execute(sa.select(incidents.c.id).where(incidents.c.public_id == public_id)).first()
    if row is None:
        return None
    allowed = _page_incident_ids(conn, page, by_service, None, None, None, only=[row.id])
    if not allowed:
        return None
    found = _load_incidents(conn, page, by_service, allowed)
    return found[0] if found else None


def load_maintenance(conn: Connection, page_id: int, public_id: str) -> Maintenance | None:
    """One maintenance window of the page by its public id, or None (not the page's)."""
    page = _page_info(conn, page_id)
    by_service = _components_by_service(conn, page_id)
    w = maintenance_windows
    shown = shown_on_page(page.team_ids, by_service, maintenance_services, "window_id", w)
    ids = conn.execute(sa.select(w.c.id).where(shown).where(w.c.public_id == public_id))
    found = _load_maintenances(conn, by_service, ids.scalars())
    return found[0] if found else None


# --- internals ------------------------------------------------------------------------------


def _page_info(
    conn: Connection, page_id: int, base_url: str = "", pages_domain: str = ""
) -> PageInfo:
    logo, favicon = assets.alias("logo"), assets.alias("favicon")
    row = conn.execute(
        sa.select(
            status_pages,
            logo.c.sha256.label("logo_hash"),
            favicon.c.sha256.label("favicon_hash"),
        )
        .select_from(
            status_pages.outerjoin(logo, logo.c.id == status_pages.c.logo_asset_id).outerjoin(
                favicon, favicon.c.id == status_pages.c.favicon_asset_id
            )
        )
        .where(status_pages.c.id == page_id)
    ).first()
    if row is None:
        raise NotFoundError(f"status page {page_id} does not exist")
    team_ids = conn.execute(
        sa.select(page_teams.c.team_id)
        .where(page_teams.c.page_id == page_id)
        .order_by(page_teams.c.position, page_teams.c.team_id)
    ).scalars()
    teams = tuple(team_ids) or (row.team_id,)
    return PageInfo(
        id=row.id,
        public_id=row.public_id,
        slug=row.slug,
        name=row.name,
        type=row.type,
        active=bool(row.active),
        time_zone=row.time_zone or "UTC",
        custom_domain=row.custom_domain,
        logo_hash=row.logo_hash,
        favicon_hash=row.favicon_hash,
        hide_uptime=bool(row.hide_uptime),
        team_ids=teams if row.team_id in teams else (*teams, row.team_id),
        url=page_address(
            row.slug,
            linked_domain(row.custom_domain, row.domain_verified_at),
            base_url=base_url,
            pages_domain=pages_domain,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
        settings=dict(row.settings or {}),
    )


@dataclass(frozen=True)
class _CompRef:
    public_id: str
    name: str


def _components_by_service(conn: Connection, page_id: int) -> dict[int, _CompRef]:
    rows = conn.execute(
        sa.select(page_services.c.service_id, page_services.c.public_id, services.c.name)
        .join(services, services.c.id == page_services.c.service_id)
        .where(page_services.c.page_id == page_id)
    )
    return {r.service_id: _CompRef(r.public_id, r.name) for r in rows}


def shown_on_page(
    team_ids: Iterable[int],
    service_ids: Iterable[int],
    link: sa.Table,
    link_col: str,
    table: sa.Table,
) -> sa.ColumnElement[bool]:
    """`table` rows (incidents, maintenance windows) of a page's managing teams that touch
    one of its services or no service at all: what the page shows."""
    ids = list(service_ids)
    touches_page = sa.exists().where(link.c[link_col] == table.c.id, link.c.service_id.in_(ids))
    touches_none = ~sa.exists().where(link.c[link_col] == table.c.id)
    return sa.and_(table.c.team_id.in_(sorted(team_ids)), sa.or_(touches_page, touches_none))


def _page_incident_ids(
    conn: Connection,
    page: PageInfo,
    by_service: Mapping[int, Any],
    before: datetime | None,
    since: datetime | None,
    limit: int | None,
    only: Sequence[int] | None = None,
) -> list[int]:
    query = sa.select(incidents.c.id).where(
        shown_on_page(page.team_ids, by_service, incident_services, "incident_id", incidents)
    )
    if before is not None:
        query = query.where(incidents.c.started_at < before)
    if since is not None:
        query = query.where(incidents.c.started_at >= since)
    if only is not None:
        query = query.where(incidents.c.id.in_(list(only)))
    query = query.order_by(incidents.c.started_at.desc(), incidents.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query).scalars())


def _incidents(
    conn: Connection, page: PageInfo, by_service: Mapping[int, Any], now: datetime
) -> tuple[Incident, ...]:
    shown = shown_on_page(page.team_ids, by_service, incident_services, "incident_id", incidents)
    since = now - timedelta(days=HISTORY_DAYS)
    ids = set(
        conn.execute(
            sa.select(incidents.c.id)
            .where(shown)
            .where(
                sa.or_(
                    incidents.c.status.in_([s.value for s in OPEN_INCIDENT]),
                    incidents.c.started_at >= since,
                    incidents.c.resolved_at >= since,
                )
            )
        ).scalars()
    )
    ids.update(_page_incident_ids(conn, page, by_service, None, None, RECENT_LIMIT))
    return _load_incidents(conn, page, by_service, ids)


def _load_incidents(
    conn: Connection, page: PageInfo, by_service: Mapping[int, Any], ids: Iterable[int]
) -> tuple[Incident, ...]:
    id_list = list(ids)
    if not id_list:
        return ()
    impacts: dict[int, list[tuple[str, ServiceStatus]]] = defaultdict(list)
    for r in conn.execute(
        sa.select(incident_services).where(incident_services.c.incident_id.in_(id_list))
    ):
        comp = by_service.get(r.service_id)
        if comp is not None:
            impacts[r.incident_id].append((comp.public_id, ServiceStatus(r.impact)))
    updates: dict[int, list[IncidentUpdate]] = defaultdict(list)
    for u in conn.execute(
        sa.select(incident_updates)
        .where(incident_updates.c.incident_id.in_(id_list))
        .order_by(incident_updates.c.display_at.desc(), incident_updates.c.id.desc())
    ):
        updates[u.incident_id].append(
            IncidentUpdate(
                id=u.id,
                public_id=u.public_id,
                status=u.status,
                body=u.body or "",
                display_at=u.display_at,
                created_at=u.created_at,
                updated_at=u.updated_at,
                affected=_affected(u.affected, by_service),
                deliver_notifications=bool(u.deliver_notifications),
            )
        )
    rows = conn.execute(
        sa.select(incidents)
        .where(incidents.c.id.in_(id_list))
        .order_by(incidents.c.started_at.desc(), incidents.c.id.desc())
    ).all()
    return tuple(
        Incident(
            id=r.id,
            public_id=r.public_id,
            title=r.title,
            status=IncidentStatus(r.status),
            impact=Impact(r.impact_override or r.impact or "none"),
            started_at=r.started_at,
            created_at=r.created_at,
            updated_at=r.updated_at,
            identified_at=r.identified_at,
            monitoring_at=r.monitoring_at,
            resolved_at=r.resolved_at,
            updates=tuple(updates.get(r.id, [])),
            impacts=tuple(sorted(impacts.get(r.id, []))),
        )
        for r in rows
    )


def _affected(value: Any, by_service: Mapping[int, Any]) -> tuple[AffectedComponent, ...] | None:
    if not isinstance(value, list):
        return None
    found = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        comp = by_service.get(item.get("service_id"))  # type: ignore[arg-type]
        if comp is None or not item.get("new_status"):
            continue
        old = item.get("old_status")
        found.append(
            AffectedComponent(
                code=comp.public_id,
                name=comp.name,
                old_status=ServiceStatus(old) if old else None,
                new_status=ServiceStatus(item["new_status"]),
            )
        )
    return tuple(found)


def _maintenances(
    conn: Connection, page: PageInfo, by_service: Mapping[int, Any]
) -> tuple[Maintenance, ...]:
    w = maintenance_windows
    shown = shown_on_page(page.team_ids, by_service, maintenance_services, "window_id", w)
    ids = set(
        conn.execute(
            sa.select(w.c.id).where(shown).where(w.c.status.in_(["scheduled", "in_progress"]))
        ).scalars()
    )
    ids.update(
        conn.execute(
            sa.select(w.c.id).where(shown).order_by(w.c.starts_at.desc()).limit(RECENT_LIMIT)
        ).scalars()
    )
    return _load_maintenances(conn, by_service, ids)


def _load_maintenances(
    conn: Connection, by_service: Mapping[int, Any], ids: Iterable[int]
) -> tuple[Maintenance, ...]:
    w = maintenance_windows
    id_list = list(ids)
    if not id_list:
        return ()
    comps: dict[int, list[str]] = defaultdict(list)
    for r in conn.execute(
        sa.select(maintenance_services).where(maintenance_services.c.window_id.in_(id_list))
    ):
        comp = by_service.get(r.service_id)
        if comp is not None:
            comps[r.window_id].append(comp.public_id)
    updates: dict[int, list[MaintenanceUpdate]] = defaultdict(list)
    for u in conn.execute(
        sa.select(maintenance_updates)
        .where(maintenance_updates.c.window_id.in_(id_list))
        .order_by(maintenance_updates.c.display_at.desc(), maintenance_updates.c.id.desc())
    ):
        updates[u.window_id].append(
            MaintenanceUpdate(
                id=u.id,
                public_id=u.public_id,
                status=u.status,
                body=u.body or "",
                display_at=u.display_at,
                created_at=u.created_at,
            )
        )
    rows = conn.execute(
        sa.select(w).where(w.c.id.in_(id_list)).order_by(w.c.starts_at.desc(), w.c.id.desc())
    ).all()
    return tuple(
        Maintenance(
            id=r.id,
            public_id=r.public_id,
            title=r.title,
            message=r.message or "",
            status=r.status,
            starts_at=r.starts_at,
            ends_at=r.ends_at,
            started_at=r.started_at,
            completed_at=r.completed_at,
            created_at=r.created_at,
            updated_at=r.updated_at,
            component_ids=tuple(sorted(comps.get(r.id, []))),
            updates=tuple(updates.get(r.id, [])),
        )
        for r in rows
    )


def _day_incidents(
    conn: Connection,
    page: PageInfo,
    service_ids: Sequence[int],
    days: Sequence[date],
    day_bounds: Sequence[tuple[datetime, datetime]],
    now: datetime,
) -> dict[tuple[int, Any], tuple[uptime.DayIncident, ...]]:
    """(service id, day) -> incidents of the page's teams on that service during that day."""
    if not service_ids:
        return {}
    start = day_bounds[0][0]
    rows = conn.execute(
        sa.select(
            incident_services.c.service_id,
            incidents.c.public_id,
            incidents.c.title,
            incidents.c.started_at,
            incidents.c.resolved_at,
        )
        .join(incidents, incidents.c.id == incident_services.c.incident_id)
        .where(incident_services.c.service_id.in_(list(service_ids)))
        .where(incidents.c.team_id.in_(page.team_ids))
        .where(incidents.c.started_at < now)
        .where(sa.or_(incidents.c.resolved_at.is_(None), incidents.c.resolved_at >= start))
        .order_by(incidents.c.started_at)
    ).all()
    found: dict[tuple[int, Any], list[uptime.DayIncident]] = defaultdict(list)
    bounds = [(d, lo, hi) for d, (lo, hi) in zip(days, day_bounds, strict=True)]
    for r in rows:
        end = r.resolved_at or now
        for day, lo, hi in bounds:
            if r.started_at < hi and end >= lo:
                found[(r.service_id, day)].append(uptime.DayIncident(r.public_id, r.title))
    return {key: tuple(value) for key, value in found.items()}


def _with_incidents(
    bar: uptime.UptimeDay, found: tuple[uptime.DayIncident, ...]
) -> uptime.UptimeDay:
    if not found:
        return bar
    return uptime.UptimeDay(
        bar.day, bar.uptime, bar.worst, bar.counted_seconds, bar.down_seconds, found
    )


__all__ = [
    "load_incident",
    "load_incidents",
    "load_maintenance",
    "load_page",
    "page_id_for_slug",
    "HISTORY_DAYS",
    "RECENT_LIMIT",
    "OPEN_INCIDENT",
    "PageInfo",
    "Group",
    "Component",
    "AffectedComponent",
    "IncidentUpdate",
    "Incident",
    "MaintenanceUpdate",
    "Maintenance",
    "PageSnapshot",
    "page_tz",
]
