"""Store objects for the page tests, written straight to the tables (the admin API and
`beacon apply` belong to other branches; these tests only need the rows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.db import Store
from engine.tables import (
    page_groups,
    page_services,
    page_teams,
    services,
    status_pages,
    teams,
)
from tests import factories


@dataclass
class SeededPage:
    id: int
    slug: str
    team_id: int
    public_id: str
    service_ids: dict[str, int] = field(default_factory=dict)
    component_ids: dict[str, str] = field(default_factory=dict)
    group_ids: dict[str, str] = field(default_factory=dict)


def team(conn: Connection, key: str, *, private: bool = False) -> int:
    found = conn.execute(sa.select(teams.c.id).where(teams.c.key == key)).scalar()
    if found is not None:
        return int(found)
    return factories.team(conn, key, private=private)


def page(
    store: Store,
    slug: str,
    *,
    team_key: str = "platform",
    type: str = "public",
    active: bool = True,
    custom_domain: str | None = None,
    services_spec: Sequence[tuple[str, str, str | None]] = (("api", "Public API", None),),
    time_zone: str = "UTC",
    created_at: datetime | None = None,
) -> SeededPage:
    """A page of `team_key` with one component per (key, name, group) in `services_spec`."""
    with store.begin() as conn:
        team_id = team(conn, team_key)
        values: dict[str, object] = {
            "team_id": team_id,
            "slug": slug,
            "name": f"{slug.title()} Status",
            "type": type,
            "active": active,
            "custom_domain": custom_domain,
            # Seeded domains are verified: their pages are served on them.
            "domain_verified_at": datetime.now(UTC) if custom_domain else None,
            "time_zone": time_zone,
        }
        page_id = conn.execute(status_pages.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(page_teams.insert().values(page_id=page_id, team_id=team_id))
        public_id = conn.execute(
            sa.select(status_pages.c.public_id).where(status_pages.c.id == page_id)
        ).scalar_one()
        seeded = SeededPage(page_id, slug, team_id, public_id)
        groups: dict[str, int] = {}
        for position, (key, name, group) in enumerate(services_spec):
            service_id = conn.execute(
                sa.select(services.c.id).where(services.c.team_id == team_id, services.c.key == key)
            ).scalar()
            if service_id is None:
                svc: dict[str, object] = {
                    "team_id": team_id,
                    "key": key,
                    "name": name,
                    "group_name": group,
                    "position": position,
                    "description": f"{name} description",
                }
                if created_at is not None:
                    svc["created_at"] = created_at
                service_id = conn.execute(services.insert().values(**svc)).inserted_primary_key[0]  # type: ignore[index]
            seeded.service_ids[key] = int(service_id)
            group_id = None
            if group:
                if group not in groups:
                    groups[group] = conn.execute(
                        page_groups.insert().values(page_id=page_id, name=group, position=position)
                    ).inserted_primary_key[0]  # type: ignore[index]
                    seeded.group_ids[group] = conn.execute(
                        sa.select(page_groups.c.public_id).where(page_groups.c.id == groups[group])
                    ).scalar_one()
                group_id = groups[group]
            ps = conn.execute(
                page_services.insert().values(
                    page_id=page_id, service_id=service_id, group_id=group_id, position=position
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            seeded.component_ids[key] = conn.execute(
                sa.select(page_services.c.public_id).where(page_services.c.id == ps)
            ).scalar_one()
    return seeded


@dataclass
class RichPage:
    page: SeededPage
    open_incident: str
    resolved_incident: str
    upcoming: str
    active: str
    completed: str


def rich_page(store: Store, slug: str = "acme", **kwargs: Any) -> RichPage:
    """A page with two groups and an ungrouped component, an open and a resolved incident,
    and an upcoming, an in-progress and a completed maintenance."""
    from engine import incidents, maintenance
    from engine.models import IncidentStatus
    from engine.tables import incidents as incident_table
    from engine.tables import maintenance_windows, utcnow

    seeded = page(
        store,
        slug,
        services_spec=(
            ("api", "Public API", "Core"),
            ("db", "Database", "Core"),
            ("web", "Website", None),
            ("cdn", "CDN", "Edge"),
        ),
        **kwargs,
    )
    s = seeded.service_ids
    now = utcnow()
    with store.begin() as conn:
        open_id = incidents.create(
            conn,
            team_id=seeded.team_id,
            title="Elevated API errors",
            message="We are investigating elevated error rates.",
            impacts={s["api"]: "partial_outage"},
            started_at=now - timedelta(minutes=30),
            now=now - timedelta(minutes=29),
        )
        incidents.post_update(
            conn,
            open_id,
            status=IncidentStatus.IDENTIFIED,
            message="A bad deploy; rolling back.",
            now=now - timedelta(minutes=10),
        )
        old_id = incidents.create(
            conn,
            team_id=seeded.team_id,
            title="Website slow",
            message="Pages load slowly.",
            impacts={s["web"]: "degraded"},
            started_at=now - timedelta(days=2),
            now=now - timedelta(days=2),
        )
        incidents.resolve(conn, old_id, message="Fixed.", now=now - timedelta(days=2, hours=-1))
        upcoming = maintenance.create(
            conn,
            team_id=seeded.team_id,
            title="Database upgrade",
            message="Upgrading PostgreSQL.",
            starts_at=now + timedelta(days=3),
            ends_at=now + timedelta(days=3, hours=2),
            service_ids=[s["db"]],
            now=now - timedelta(hours=1),
        )
        active = maintenance.create(
            conn,
            team_id=seeded.team_id,
            title="CDN provider switch",
            message="Moving to a new CDN.",
            starts_at=now - timedelta(minutes=20),
            ends_at=now + timedelta(hours=1),
            service_ids=[s["cdn"]],
            now=now - timedelta(hours=2),
        )
        maintenance.start(conn, active, now=now - timedelta(minutes=20))
        done = maintenance.create(
            conn,
            team_id=seeded.team_id,
            title="Web server patching",
            message="Kernel updates.",
            starts_at=now - timedelta(days=5),
            ends_at=now - timedelta(days=5, hours=-1),
            service_ids=[s["web"]],
            now=now - timedelta(days=6),
        )
        maintenance.start(conn, done, now=now - timedelta(days=5))
        maintenance.complete(conn, done, now=now - timedelta(days=5, hours=-1))

        def incident_pid(i: int) -> str:
            query = sa.select(incident_table.c.public_id).where(incident_table.c.id == i)
            return str(conn.execute(query).scalar_one())

        def window_pid(i: int) -> str:
            query = sa.select(maintenance_windows.c.public_id).where(maintenance_windows.c.id == i)
            return str(conn.execute(query).scalar_one())

        return RichPage(
            seeded,
            incident_pid(open_id),
            incident_pid(old_id),
            window_pid(upcoming),
            window_pid(active),
            window_pid(done),
        )
