"""Maintenance windows: they move through Statuspage's states by themselves.

A window is `scheduled` until its start, `in_progress` until its end (its services show
`under_maintenance`), then `completed`, with a timeline update at each step. The steps are
deadlines (`maintenance.start`, `maintenance.end`), so they happen once, on time, across
restarts and processes. At the end an outbox row `maintenance.ended` tells the rules runtime
to replay or drop the alerts it held during the window (`on_end`).

Every write of a window is here, for the admin API and `beacon apply` alike; `actor` names
who made it for the audit row (the steps by the clock name none). A window's `key`, when it
has one (a config file's windows do), is unique in its team.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import crud, deadlines, outbox, status
from .errors import ConflictError, NotFoundError, ValidationError
from .models import MaintenanceStatus, OnEnd
from .status import PAGES_DIRTY
from .tables import (
    maintenance_services,
    maintenance_updates,
    maintenance_windows,
    new_public_id,
    services,
    utcnow,
)

START = "maintenance.start"
END = "maintenance.end"
ENDED = "maintenance.ended"
#: Outbox kind for an update of a window with `notify` (workers.fanout tells subscribers).
NOTIFY_UPDATE = "notify.maintenance_update"


def service_ids_of(conn: Connection, window_id: int) -> list[int]:
    """The ids of the services a maintenance window covers, sorted."""
    return sorted(
        conn.execute(
            sa.select(maintenance_services.c.service_id).where(
                maintenance_services.c.window_id == window_id
            )
        ).scalars()
    )


def _window(conn: Connection, window_id: int) -> Any:
    row = conn.execute(
        sa.select(maintenance_windows).where(maintenance_windows.c.id == window_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no maintenance window {window_id}")
    return row


def _check(
    conn: Connection,
    team_id: int,
    starts_at: datetime,
    ends_at: datetime,
    service_ids: Sequence[int],
) -> None:
    if ends_at <= starts_at:
        raise ValidationError("a maintenance window must end after it starts", field="end")
    found = set(
        conn.execute(
            sa.select(services.c.id).where(
                services.c.id.in_(list(service_ids)), services.c.team_id == team_id
            )
        ).scalars()
    )
    if set(service_ids) - found:
        raise ValidationError("every service must belong to the window's team", field="services")


def create(
    conn: Connection,
    *,
    team_id: int,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    service_ids: Sequence[int],
    message: str = "",
    notify: bool = False,
    on_end: OnEnd | str = OnEnd.REPLAY,
    key: str | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> int:
    """Schedule a window; it starts and ends by itself. Returns its id. Without `key` (made in
    the UI or over the API) it gets one from its title, so a config file can name it."""
    now = now or utcnow()
    if key is None:
        key = _key_for(conn, team_id, title)
    elif conn.execute(
        sa.select(maintenance_windows.c.id).where(
            maintenance_windows.c.team_id == team_id, maintenance_windows.c.key == key
        )
    ).first():
        raise ConflictError(f"a maintenance window with key {key!r} exists in this team")
    _check(conn, team_id, starts_at, ends_at, service_ids)
    inserted = conn.execute(
        maintenance_windows.insert().values(
            team_id=team_id,
            key=key,
            title=title,
            message=message,
            starts_at=starts_at,
            ends_at=ends_at,
            notify=notify,
            on_end=OnEnd(on_end),
            status=MaintenanceStatus.SCHEDULED,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key
    assert inserted is not None
    window_id = int(inserted[0])
    if service_ids:
        conn.execute(
            maintenance_services.insert(),
            [{"window_id": window_id, "service_id": s} for s in set(service_ids)],
        )
    update_row = conn.execute(
        maintenance_updates.insert().values(
            window_id=window_id,
            status=MaintenanceStatus.SCHEDULED,
            body=message,
            display_at=now,
            created_at=now,
        )
    )
    _notify(conn, notify, update_row)
    sync_schedule(conn, window_id, now=now)
    if actor is not None:
        # Pages list a scheduled window as upcoming maintenance: someone's scheduling shows
        # at once, through the admin API and `beacon apply` alike. Without an actor (the
        # engine's own tests of the clock) the window's steps re-render its pages.
        crud.pages_dirty(conn, window_ids=[window_id])
        crud.created(
            conn,
            maintenance_windows,
            window_id,
            actor,
            "maintenance window",
            key,
            team_id=team_id,
        )
    return window_id


def _key_for(conn: Connection, team_id: int, title: str) -> str:
    """A free key made from `title`: `database-upgrade-k3j2p`."""
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:48] or "window"
    while True:
        key = f"{base}-{new_public_id()[:5]}"
        taken = conn.execute(
            sa.select(maintenance_windows.c.id).where(
                maintenance_windows.c.team_id == team_id, maintenance_windows.c.key == key
            )
        ).first()
        if taken is None:
            return key


def _audit(
    conn: Connection,
    actor: str | None,
    action: str,
    window_id: int,
    key: str | None,
    team_id: int,
    **detail: Any,
) -> None:
    if actor is not None:
        name = key or str(window_id)
        crud.audit(conn, actor, action, "maintenance window", name, team_id=team_id, detail=detail)


def update(
    conn: Connection,
    window_id: int,
    *,
    title: str | None = None,
    message: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    service_ids: Sequence[int] | None = None,
    notify: bool | None = None,
    on_end: OnEnd | str | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> None:
    """Change a window; its deadlines follow the new times. A completed window is history."""
    now = now or utcnow()
    row = _window(conn, window_id)
    if row.status == MaintenanceStatus.COMPLETED:
        raise ValidationError("a completed maintenance window cannot be changed")
    new_start = starts_at or row.starts_at
    new_end = ends_at or row.ends_at
    ids = list(service_ids) if service_ids is not None else service_ids_of(conn, window_id)
    _check(conn, row.team_id, new_start, new_end, ids)
    values: dict[str, Any] = {"starts_at": new_start, "ends_at": new_end, "updated_at": now}
    for name, value in (("title", title), ("message", message), ("notify", notify)):
        if value is not None:
            values[name] = value
    if on_end is not None:
        values["on_end"] = OnEnd(on_end)
    conn.execute(
        maintenance_windows.update().where(maintenance_windows.c.id == window_id).values(**values)
    )
    touched = set(service_ids_of(conn, window_id))
    if service_ids is not None:
        conn.execute(
            maintenance_services.delete().where(maintenance_services.c.window_id == window_id)
        )
        if ids:
            conn.execute(
                maintenance_services.insert(),
                [{"window_id": window_id, "service_id": s} for s in set(ids)],
            )
        touched |= set(ids)
    status.recompute(
        conn, touched, cause_kind="maintenance", cause={"window_id": window_id}, now=now
    )
    sync_schedule(conn, window_id, now=now)
    outbox.emit(conn, PAGES_DIRTY, {"window_ids": [window_id], "service_ids": sorted(touched)})
    asked = {
        "title": title,
        "message": message,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "services": service_ids,
        "notify": notify,
        "on_end": on_end,
    }
    fields = sorted(k for k, v in asked.items() if v is not None)
    _audit(conn, actor, "update", window_id, row.key, row.team_id, fields=fields)


def delete(conn: Connection, window_id: int, *, actor: str | None = None) -> None:
    """Remove a window (a mistake); its services recompute and its deadlines go."""
    row = _window(conn, window_id)
    ids = service_ids_of(conn, window_id)
    deadlines.cancel(conn, START, str(window_id))
    deadlines.cancel(conn, END, str(window_id))
    outbox.emit(conn, PAGES_DIRTY, {"window_ids": [window_id], "service_ids": ids})
    conn.execute(maintenance_windows.delete().where(maintenance_windows.c.id == window_id))
    status.recompute(
        conn, ids, cause_kind="maintenance", cause={"window_id": window_id, "deleted": True}
    )
    _audit(conn, actor, "delete", window_id, row.key, row.team_id)


def sync_schedule(conn: Connection, window_id: int, *, now: datetime | None = None) -> None:
    """Make the window's deadlines match its state and times (starting or ending it at once
    when its time has already come)."""
    now = now or utcnow()
    row = _window(conn, window_id)
    if row.status == MaintenanceStatus.SCHEDULED:
        deadlines.cancel(conn, END, str(window_id))
        if row.starts_at <= now:
            start(conn, window_id, now=now)
        else:
            deadlines.schedule(conn, START, str(window_id), row.starts_at, {"window_id": window_id})
    elif row.status == MaintenanceStatus.IN_PROGRESS:
        deadlines.cancel(conn, START, str(window_id))
        if row.ends_at <= now:
            complete(conn, window_id, now=now)
        else:
            deadlines.schedule(conn, END, str(window_id), row.ends_at, {"window_id": window_id})


def _step(
    conn: Connection,
    window_id: int,
    *,
    from_status: MaintenanceStatus,
    to_status: MaintenanceStatus,
    stamp: str,
    default_body: str,
    now: datetime,
) -> tuple[Any, list[int]] | None:
    """Move the window from `from_status` to `to_status` if it is still there (a second
    delivery of the same deadline does nothing), with a timeline update and its services'
    statuses recomputed. Returns the window and its service ids, or None if it had moved."""
    result = conn.execute(
        maintenance_windows.update()
        .where(maintenance_windows.c.id == window_id, maintenance_windows.c.status == from_status)
        .values(status=to_status, updated_at=now, **{stamp: now})
    )
    if not result.rowcount:
        return None
    row = _window(conn, window_id)
    update_row = conn.execute(
        maintenance_updates.insert().values(
            window_id=window_id, status=to_status, body=default_body, display_at=now, created_at=now
        )
    )
    _notify(conn, row.notify, update_row)
    ids = service_ids_of(conn, window_id)
    status.recompute(
        conn,
        ids,
        cause_kind="maintenance",
        cause={"window_id": window_id, "title": row.title},
        now=now,
    )
    outbox.emit(conn, PAGES_DIRTY, {"window_ids": [window_id], "service_ids": ids})
    return row, ids


def start(conn: Connection, window_id: int, *, now: datetime | None = None) -> bool:
    """Move a scheduled window to in progress (its services go under maintenance)."""
    now = now or utcnow()
    message = conn.execute(
        sa.select(maintenance_windows.c.message).where(maintenance_windows.c.id == window_id)
    ).scalar()
    stepped = _step(
        conn,
        window_id,
        from_status=MaintenanceStatus.SCHEDULED,
        to_status=MaintenanceStatus.IN_PROGRESS,
        stamp="started_at",
        default_body=message or "Scheduled maintenance is in progress.",
        now=now,
    )
    if stepped is None:
        return False
    row, _ids = stepped
    if row.ends_at <= now:
        complete(conn, window_id, now=now)
    else:
        deadlines.schedule(conn, END, str(window_id), row.ends_at, {"window_id": window_id})
    return True


def complete(conn: Connection, window_id: int, *, now: datetime | None = None) -> bool:
    """Move an in-progress window to completed and hand its held alerts to the rules."""
    now = now or utcnow()
    stepped = _step(
        conn,
        window_id,
        from_status=MaintenanceStatus.IN_PROGRESS,
        to_status=MaintenanceStatus.COMPLETED,
        stamp="completed_at",
        default_body="The scheduled maintenance has been completed.",
        now=now,
    )
    if stepped is None:
        return False
    row, ids = stepped
    outbox.emit(conn, ENDED, {"window_id": window_id, "on_end": row.on_end, "service_ids": ids})
    return True


def _notify(conn: Connection, notify: bool, inserted: Any) -> None:
    """Hand a new update of a window with `notify` to the subscriber fan-out."""
    if notify and inserted.inserted_primary_key is not None:
        outbox.emit(conn, NOTIFY_UPDATE, {"update_id": int(inserted.inserted_primary_key[0])})
