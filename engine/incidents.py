"""Incidents: title, status, impact per affected service, a timeline of updates.

Every function works in the caller's transaction, recomputes the statuses of the services
it touches (an open incident's impact counts towards a service's effective status) and marks
the incident's pages dirty. A person's change (the admin API, the web UI) names its `actor`
and is audited; the rules engine's own changes name none (its activations record why).

An incident's `impact` is its peak (kept after resolving);
`impact_override`, when set, is what the pages show instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import crud, outbox
from . import status as status_rollup
from .errors import NotFoundError, ValidationError
from .models import IMPACT_OF_STATUS, Impact, IncidentStatus, ServiceStatus
from .status import IMPACT_RANK, PAGES_DIRTY
from .tables import (
    incident_services,
    incident_updates,
    incidents,
    services,
    utcnow,
)

#: Outbox kind for an update whose subscribers are to be told (workers.fanout).
NOTIFY_UPDATE = "notify.incident_update"
OPEN_STATUSES = (IncidentStatus.INVESTIGATING, IncidentStatus.IDENTIFIED, IncidentStatus.MONITORING)
_STAMP = {
    IncidentStatus.IDENTIFIED: "identified_at",
    IncidentStatus.MONITORING: "monitoring_at",
    IncidentStatus.RESOLVED: "resolved_at",
}


@dataclass(frozen=True)
class IncidentRef:
    id: int
    public_id: str
    team_id: int
    status: IncidentStatus
    managed_by: str


def _impact_of(impacts: Mapping[int, ServiceStatus]) -> Impact:
    levels = [IMPACT_OF_STATUS[ServiceStatus(s)] for s in impacts.values()]
    return max(levels, key=IMPACT_RANK.__getitem__, default=Impact.NONE)


def _check_services(conn: Connection, team_id: int, service_ids: list[int]) -> None:
    if not service_ids:
        return
    found = set(
        conn.execute(
            sa.select(services.c.id).where(
                services.c.id.in_(service_ids), services.c.team_id == team_id
            )
        ).scalars()
    )
    missing = sorted(set(service_ids) - found)
    if missing:
        raise ValidationError(
            f"services {missing} are not services of the incident's team", field="services"
        )


def _current_statuses(conn: Connection, service_ids: list[int]) -> dict[int, str]:
    if not service_ids:
        return {}
    return {
        r.id: r.status
        for r in conn.execute(
            sa.select(services.c.id, services.c.status).where(services.c.id.in_(service_ids))
        )
    }


def _affected(before: dict[int, str], after: dict[int, str]) -> list[dict[str, Any]] | None:
    rows = [
        {"service_id": sid, "old_status": before.get(sid), "new_status": after[sid]}
        for sid in sorted(after)
        if before.get(sid) != after[sid]
    ]
    return rows or None


def get(conn: Connection, incident_id: int) -> IncidentRef:
    row = conn.execute(
        sa.select(
            incidents.c.id,
            incidents.c.public_id,
            incidents.c.team_id,
            incidents.c.status,
            incidents.c.managed_by,
        ).where(incidents.c.id == incident_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no incident {incident_id}")
    return IncidentRef(
        row.id, row.public_id, row.team_id, IncidentStatus(row.status), row.managed_by
    )


def service_ids_of(conn: Connection, incident_id: int) -> list[int]:
    """The ids of the services an incident affects, sorted."""
    return sorted(
        conn.execute(
            sa.select(incident_services.c.service_id).where(
                incident_services.c.incident_id == incident_id
            )
        ).scalars()
    )


def create(
    conn: Connection,
    *,
    team_id: int,
    title: str,
    message: str = "",
    status: IncidentStatus | str = IncidentStatus.INVESTIGATING,
    impacts: Mapping[int, ServiceStatus | str] | None = None,
    started_at: datetime | None = None,
    template_id: int | None = None,
    activation_id: int | None = None,
    managed_by: str = "human",
    author: str | None = None,
    notify: bool = True,
    impact_override: Impact | str | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> int:
    """Open an incident (or record a past one when `status` is resolved); returns its id.

    `started_at` backdates it; the first update is shown at that time.
    """
    now = now or utcnow()
    status = IncidentStatus(status)
    if not title.strip():
        raise ValidationError("an incident needs a title", field="title")
    impact_map = {int(k): ServiceStatus(v) for k, v in (impacts or {}).items()}
    _check_services(conn, team_id, list(impact_map))
    started = started_at or now
    if started > now:
        raise ValidationError("started_at is in the future", field="started_at")
    before = _current_statuses(conn, list(impact_map))
    values: dict[str, Any] = {
        "team_id": team_id,
        "title": title.strip(),
        "status": status,
        "impact": _impact_of(impact_map),
        "impact_override": Impact(impact_override) if impact_override else None,
        "started_at": started,
        "template_id": template_id,
        "activation_id": activation_id,
        "managed_by": managed_by,
        "created_at": now,
        "updated_at": now,
    }
    if status in _STAMP:
        values[_STAMP[status]] = now
    inserted = conn.execute(incidents.insert().values(**values)).inserted_primary_key
    assert inserted is not None
    incident_id = int(inserted[0])
    _add_impacts(conn, incident_id, impact_map)
    _record_update(
        conn,
        incident_id,
        values["title"],
        list(impact_map),
        before,
        status=status,
        message=message,
        display_at=started if status != IncidentStatus.RESOLVED else now,
        notify=notify,
        author=author,
        now=now,
    )
    _audit(conn, actor, "create", incident_id, team_id)
    return incident_id


def _add_impacts(
    conn: Connection, incident_id: int, impact_map: Mapping[int, ServiceStatus]
) -> None:
    if impact_map:
        conn.execute(
            incident_services.insert(),
            [
                {"incident_id": incident_id, "service_id": sid, "impact": s}
                for sid, s in impact_map.items()
            ],
        )


def _record_update(
    conn: Connection,
    incident_id: int,
    title: str,
    service_ids: list[int],
    before: dict[int, str],
    *,
    status: IncidentStatus,
    message: str,
    display_at: datetime,
    notify: bool,
    author: str | None,
    now: datetime,
) -> int:
    """The timeline entry of a change already made to the incident: the statuses of
    `service_ids` recomputed, the entry with what moved since `before` (their statuses
    before the change), the subscribers told (`notify`) and the pages re-rendered. Opening
    and later updates both record theirs here, so neither can leave a step out. Returns the
    entry's id."""
    _recompute(conn, service_ids, incident_id, title, now)
    after = _current_statuses(conn, service_ids)
    inserted = conn.execute(
        incident_updates.insert().values(
            incident_id=incident_id,
            status=status,
            body=message,
            display_at=display_at,
            affected=_affected(before, after),
            deliver_notifications=notify,
            author=author,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key
    assert inserted is not None
    update_id = int(inserted[0])
    if notify:
        outbox.emit(conn, NOTIFY_UPDATE, {"update_id": update_id})
    outbox.emit(conn, PAGES_DIRTY, {"incident_ids": [incident_id]})
    return update_id


def _audit(
    conn: Connection,
    actor: str | None,
    action: str,
    incident_id: int,
    team_id: int,
    **detail: Any,
) -> None:
    if actor is not None:
        crud.audit(
            conn, actor, action, "incident", str(incident_id), team_id=team_id, detail=detail
        )


def _recompute(
    conn: Connection, service_ids: list[int], incident_id: int, title: str, now: datetime
) -> None:
    status_rollup.recompute(
        conn,
        service_ids,
        cause_kind="incident",
        cause={"incident_id": incident_id, "title": title},
        now=now,
    )


def post_update(
    conn: Connection,
    incident_id: int,
    *,
    status: IncidentStatus | str | None = None,
    message: str = "",
    author: str | None = None,
    impacts: Mapping[int, ServiceStatus | str] | None = None,
    display_at: datetime | None = None,
    notify: bool = True,
    now: datetime | None = None,
    actor: str | None = None,
) -> int:
    """Add an update to the timeline, optionally moving the status and changing the
    impacts (a full replacement of the affected services); returns the update's id."""
    now = now or utcnow()
    ref = get(conn, incident_id)
    new_status = IncidentStatus(status) if status else ref.status
    old_ids = set(service_ids_of(conn, incident_id))
    changes: dict[str, Any] = {"status": new_status, "updated_at": now}
    touched = set(old_ids)
    if impacts is not None:
        impact_map = {int(k): ServiceStatus(v) for k, v in impacts.items()}
        _check_services(conn, ref.team_id, list(impact_map))
        conn.execute(
            incident_services.delete().where(incident_services.c.incident_id == incident_id)
        )
        _add_impacts(conn, incident_id, impact_map)
        touched |= set(impact_map)
        peak = conn.execute(
            sa.select(incidents.c.impact).where(incidents.c.id == incident_id)
        ).scalar_one()
        new_impact = _impact_of(impact_map)
        if IMPACT_RANK[new_impact] > IMPACT_RANK[Impact(peak)]:
            changes["impact"] = new_impact
    when = display_at or now
    if new_status != ref.status and new_status in _STAMP:
        changes[_STAMP[new_status]] = when
    if new_status in OPEN_STATUSES and ref.status not in OPEN_STATUSES:
        changes["resolved_at"] = None  # reopened
    before = _current_statuses(conn, sorted(touched))
    conn.execute(incidents.update().where(incidents.c.id == incident_id).values(**changes))
    title = conn.execute(
        sa.select(incidents.c.title).where(incidents.c.id == incident_id)
    ).scalar_one()
    update_id = _record_update(
        conn,
        incident_id,
        title,
        sorted(touched),
        before,
        status=new_status,
        message=message,
        display_at=when,
        notify=notify,
        author=author,
        now=now,
    )
    _audit(conn, actor, "update", incident_id, ref.team_id, update_id=update_id)
    return update_id


def resolve(
    conn: Connection,
    incident_id: int,
    *,
    message: str = "",
    author: str | None = None,
    notify: bool = True,
    now: datetime | None = None,
) -> int:
    """Resolve the incident with a final update; its services no longer carry its impact."""
    return post_update(
        conn,
        incident_id,
        status=IncidentStatus.RESOLVED,
        message=message,
        author=author,
        notify=notify,
        now=now,
    )


def take_over(conn: Connection, incident_id: int, author: str) -> None:
    """A person (`author`, audited) takes the incident over: automation leaves its timeline
    alone from now on."""
    ref = get(conn, incident_id)
    conn.execute(
        incidents.update()
        .where(incidents.c.id == incident_id)
        .values(managed_by="human", updated_at=utcnow())
    )
    _audit(conn, author, "take over", incident_id, ref.team_id)


def edit(
    conn: Connection,
    incident_id: int,
    *,
    title: str | None = None,
    started_at: datetime | None = None,
    impact_override: Impact | str | None = None,
    clear_impact_override: bool = False,
    author: str | None = None,
    actor: str | None = None,
) -> None:
    """Change an incident's title, start (backdating) or impact override."""
    ref = get(conn, incident_id)
    values: dict[str, Any] = {"updated_at": utcnow()}
    if title is not None:
        if not title.strip():
            raise ValidationError("an incident needs a title", field="title")
        values["title"] = title.strip()
    if started_at is not None:
        if started_at > utcnow():
            raise ValidationError("started_at is in the future", field="started_at")
        values["started_at"] = started_at
    if impact_override is not None:
        values["impact_override"] = Impact(impact_override)
    elif clear_impact_override:
        values["impact_override"] = None
    conn.execute(incidents.update().where(incidents.c.id == incident_id).values(**values))
    outbox.emit(conn, PAGES_DIRTY, {"incident_ids": [incident_id]})
    fields = sorted(k for k in values if k != "updated_at")
    _audit(conn, actor, "update", incident_id, ref.team_id, fields=fields)


def delete(conn: Connection, incident_id: int, *, actor: str | None = None) -> None:
    """Delete an incident outright (a mistake, not a resolution); its services recompute."""
    ref = get(conn, incident_id)
    shown_on = service_ids_of(conn, incident_id)
    # The pages that showed it must drop it: find them before the rows go.
    outbox.emit(conn, PAGES_DIRTY, {"service_ids": shown_on, "incident_ids": [incident_id]})
    conn.execute(incidents.delete().where(incidents.c.id == incident_id))
    status_rollup.recompute(
        conn,
        shown_on,
        cause_kind="incident",
        cause={"incident_id": incident_id, "deleted": True},
    )
    _audit(conn, actor, "delete", incident_id, ref.team_id)


def _update_row(conn: Connection, incident_id: int, update_id: int) -> Any:
    row = conn.execute(
        sa.select(incident_updates).where(
            incident_updates.c.id == update_id, incident_updates.c.incident_id == incident_id
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no update {update_id} on incident {incident_id}")
    return row


def edit_update(
    conn: Connection,
    incident_id: int,
    update_id: int,
    *,
    message: str | None = None,
    display_at: datetime | None = None,
    actor: str | None = None,
) -> None:
    """Correct an update's text or the time it is shown at (nothing given: nothing
    happens). Subscribers are not told again: they were told what it said then."""
    ref = get(conn, incident_id)
    _update_row(conn, incident_id, update_id)
    values: dict[str, Any] = {}
    if message is not None:
        values["body"] = message
    if display_at is not None:
        if display_at > utcnow():
            raise ValidationError("display_at is in the future", field="display_at")
        values["display_at"] = display_at
    if not values:
        return
    conn.execute(
        incident_updates.update()
        .where(incident_updates.c.id == update_id)
        .values(**values, updated_at=utcnow())
    )
    outbox.emit(conn, PAGES_DIRTY, {"incident_ids": [incident_id]})
    _audit(conn, actor, "edit update", incident_id, ref.team_id, update_id=update_id)


def delete_update(
    conn: Connection, incident_id: int, update_id: int, *, actor: str | None = None
) -> None:
    """Remove an update from the timeline (the incident's status stays as it is)."""
    ref = get(conn, incident_id)
    _update_row(conn, incident_id, update_id)
    conn.execute(incident_updates.delete().where(incident_updates.c.id == update_id))
    outbox.emit(conn, PAGES_DIRTY, {"incident_ids": [incident_id]})
    _audit(conn, actor, "delete update", incident_id, ref.team_id, update_id=update_id)
