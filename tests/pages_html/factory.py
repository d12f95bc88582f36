"""Rows for page tests: teams, services, pages, incidents and maintenances, written straight
to the store (the admin API and `apply` are other branches' work)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from engine import status
from engine.tables import (
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
    status_changes,
    status_pages,
    teams,
)


def team(conn: Connection, key: str = "platform") -> int:
    return int(conn.execute(teams.insert().values(key=key, name=key)).inserted_primary_key[0])


def service(
    conn: Connection,
    team_id: int,
    key: str,
    *,
    name: str | None = None,
    created_at: datetime | None = None,
    status: str = "operational",
    group: str | None = None,
) -> int:
    values: dict[str, object] = {
        "team_id": team_id,
        "key": key,
        "name": name or key.title(),
        "status": status,
        "group_name": group,
    }
    if created_at is not None:
        values.update(created_at=created_at, updated_at=created_at, status_since=created_at)
    return int(conn.execute(services.insert().values(**values)).inserted_primary_key[0])


def page(
    conn: Connection,
    team_id: int,
    slug: str = "acme",
    *,
    name: str = "ACME Status",
    active: bool = True,
    time_zone: str = "UTC",
    hide_uptime: bool = False,
    type: str = "public",
) -> int:
    page_id = int(
        conn.execute(
            status_pages.insert().values(
                team_id=team_id,
                slug=slug,
                name=name,
                active=active,
                time_zone=time_zone,
                hide_uptime=hide_uptime,
                type=type,
            )
        ).inserted_primary_key[0]
    )
    conn.execute(page_teams.insert().values(page_id=page_id, team_id=team_id, position=0))
    return page_id


def group(conn: Connection, page_id: int, name: str, position: int = 0) -> int:
    return int(
        conn.execute(
            page_groups.insert().values(page_id=page_id, name=name, position=position)
        ).inserted_primary_key[0]
    )


def add_service(
    conn: Connection, page_id: int, service_id: int, position: int, group_id: int | None = None
) -> int:
    return int(
        conn.execute(
            page_services.insert().values(
                page_id=page_id, service_id=service_id, position=position, group_id=group_id
            )
        ).inserted_primary_key[0]
    )


def change(
    conn: Connection, service_id: int, old: str | None, new: str, at: datetime, kind: str = "rule"
) -> None:
    conn.execute(
        status_changes.insert().values(
            service_id=service_id, old_status=old, new_status=new, cause_kind=kind, at=at
        )
    )


def set_status(conn: Connection, service_id: int, new: str, at: datetime) -> None:
    """Change a service's status the way the engine does: override + recompute."""
    conn.execute(services.update().where(services.c.id == service_id).values(override_status=new))
    status.recompute(conn, [service_id], cause_kind="override", now=at)


def incident(
    conn: Connection,
    team_id: int,
    title: str,
    *,
    started_at: datetime,
    impacts: dict[int, str],
    status: str = "investigating",
    resolved_at: datetime | None = None,
    impact: str = "major",
    updates: Sequence[tuple[str, str, datetime]] = (),
) -> int:
    incident_id = int(
        conn.execute(
            incidents.insert().values(
                team_id=team_id,
                title=title,
                status=status,
                impact=impact,
                started_at=started_at,
                created_at=started_at,
                updated_at=resolved_at or started_at,
                resolved_at=resolved_at,
            )
        ).inserted_primary_key[0]
    )
    for sid, value in impacts.items():
        conn.execute(
            incident_services.insert().values(incident_id=incident_id, service_id=sid, impact=value)
        )
    for update_status, body, at in updates:
        conn.execute(
            incident_updates.insert().values(
                incident_id=incident_id,
                status=update_status,
                body=body,
                display_at=at,
                created_at=at,
                updated_at=at,
                affected=[
                    {"service_id": sid, "old_status": "operational", "new_status": value}
                    for sid, value in impacts.items()
                ],
            )
        )
    return incident_id


def maintenance(
    conn: Connection,
    team_id: int,
    title: str,
    *,
    starts_at: datetime,
    ends_at: datetime,
    service_ids: Sequence[int],
    status: str = "scheduled",
    message: str = "",
) -> int:
    window_id = int(
        conn.execute(
            maintenance_windows.insert().values(
                team_id=team_id,
                title=title,
                message=message,
                starts_at=starts_at,
                ends_at=ends_at,
                status=status,
            )
        ).inserted_primary_key[0]
    )
    for sid in service_ids:
        conn.execute(maintenance_services.insert().values(window_id=window_id, service_id=sid))
    conn.execute(
        maintenance_updates.insert().values(
            window_id=window_id, status=status, body=message or title, display_at=starts_at
        )
    )
    return window_id
