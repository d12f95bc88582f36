"""The one place tests put domain rows in a store: teams, services, alert sources,
incident templates, pages, incidents, maintenance windows and status history.

Straight to the tables, fast, with defaults a test overrides by keyword (`**values` are
columns): the write functions of `engine/` (and their audit and outbox rows) are under
test elsewhere; here a test states the world it needs. Each returns the new row's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from engine import status, vault
from engine.sources import SIGNING_SECRET
from engine.tables import (
    alert_sources,
    incident_services,
    incident_templates,
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


def _pk(result: Any) -> int:
    return int(result.inserted_primary_key[0])


def team(conn: Connection, key: str = "platform", **values: Any) -> int:
    values.setdefault("name", key)
    return _pk(conn.execute(teams.insert().values(key=key, **values)))


def service(
    conn: Connection,
    team_id: int,
    key: str,
    *,
    name: str | None = None,
    created_at: datetime | None = None,
    status: str = "operational",
    group: str | None = None,
    **columns: Any,
) -> int:
    values: dict[str, object] = {
        "team_id": team_id,
        "key": key,
        "name": name or key.title(),
        "status": status,
        "group_name": group,
        **columns,
    }
    if created_at is not None:
        values.update(created_at=created_at, updated_at=created_at, status_since=created_at)
    return _pk(conn.execute(services.insert().values(**values)))


def source(
    conn: Connection,
    team_id: int,
    key: str,
    type: str = "alertmanager",
    *,
    integration_key: str | None = None,
    **values: Any,
) -> int:
    """An alert source (its integration key `<key>-<team id>-secret` unless given; the row
    keeps its digest and a sealed signing secret, as engine.sources writes them)."""
    values.setdefault("name", key)
    keyring = vault.of(conn)
    if values.get("signing_secret"):
        values["signing_secret"] = keyring.seal(values["signing_secret"], SIGNING_SECRET)
    return _pk(
        conn.execute(
            alert_sources.insert().values(
                team_id=team_id,
                key=key,
                type=type,
                key_digest=keyring.digest(integration_key or f"{key}-{team_id}-secret"),
                **values,
            )
        )
    )


def template(conn: Connection, team_id: int, key: str, title: str, **values: Any) -> int:
    """An incident template."""
    return _pk(
        conn.execute(
            incident_templates.insert().values(team_id=team_id, key=key, title=title, **values)
        )
    )


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
    page_id = _pk(
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
        )
    )
    conn.execute(page_teams.insert().values(page_id=page_id, team_id=team_id, position=0))
    return page_id


def group(conn: Connection, page_id: int, name: str, position: int = 0) -> int:
    return _pk(
        conn.execute(page_groups.insert().values(page_id=page_id, name=name, position=position))
    )


def add_service(
    conn: Connection, page_id: int, service_id: int, position: int, group_id: int | None = None
) -> int:
    return _pk(
        conn.execute(
            page_services.insert().values(
                page_id=page_id, service_id=service_id, position=position, group_id=group_id
            )
        )
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
    incident_id = _pk(
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
        )
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
    updates: bool = True,
    **values: Any,
) -> int:
    """A maintenance window on `service_ids`, with its first update unless `updates` is
    false (`values`: more columns, such as `key` and `on_end`)."""
    window_id = _pk(
        conn.execute(
            maintenance_windows.insert().values(
                team_id=team_id,
                title=title,
                message=message,
                starts_at=starts_at,
                ends_at=ends_at,
                status=status,
                **values,
            )
        )
    )
    for sid in service_ids:
        conn.execute(maintenance_services.insert().values(window_id=window_id, service_id=sid))
    if updates:
        conn.execute(
            maintenance_updates.insert().values(
                window_id=window_id, status=status, body=message or title, display_at=starts_at
            )
        )
    return window_id


def big_page(
    conn: Connection,
    now: datetime,
    *,
    services_count: int = 50,
    incidents_count: int = 3,
    slug: str = "acme",
) -> dict[str, object]:
    """The benchmark page: `services_count` services in 5 groups with 90 days of history
    (a few outages each) and `incidents_count` incidents, one of them open."""
    from datetime import timedelta

    team_id = team(conn)
    page_id = page(conn, team_id, slug)
    groups = [group(conn, page_id, f"Group {g}", position=g) for g in range(5)]
    service_ids = []
    for n in range(services_count):
        sid = service(
            conn, team_id, f"svc-{n}", name=f"Service {n}", created_at=now - timedelta(days=200)
        )
        add_service(conn, page_id, sid, position=n, group_id=groups[n % 5])
        service_ids.append(sid)
        for k in range(3):
            start = now - timedelta(days=7 + 23 * k + n % 11, hours=n % 7)
            worst = ("degraded", "partial_outage", "major_outage")[(n + k) % 3]
            change(conn, sid, "operational", worst, start)
            change(conn, sid, worst, "operational", start + timedelta(hours=1 + k))
    # Two hours ago, or less just after midnight: each incident stays within its own day
    # (the page's time zone is UTC), so a day's details name it whenever the tests run.
    back = min(timedelta(hours=2), (now - now.replace(hour=0, minute=0, second=0)) * 0.9)
    for k in range(incidents_count):
        opened = now - back - timedelta(days=k * 3)
        incident(
            conn,
            team_id,
            f"Elevated errors on Service {k}",
            started_at=opened,
            impacts={service_ids[k % len(service_ids)]: "partial_outage"},
            status="investigating" if k == 0 else "resolved",
            resolved_at=None if k == 0 else opened + back / 2,
            updates=[
                ("investigating", "We are investigating elevated error rates.", opened),
                (
                    "identified",
                    "A faulty deploy was identified and is being rolled back.",
                    opened + back / 6,
                ),
            ],
        )
    return {"team": team_id, "page": page_id, "services": service_ids}
