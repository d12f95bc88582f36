"""Incidents, their timeline updates, and maintenance windows over the admin API, built on
`engine.incidents` and `engine.maintenance` (which recompute statuses, mark pages dirty and
audit the change as the caller's `actor`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import incidents, maintenance
from engine.errors import NotFoundError
from engine.tables import (
    incident_services,
    incident_updates,
    maintenance_services,
    maintenance_windows,
    utcnow,
)
from engine.tables import incidents as incident_table
from pages.errors import FieldErrors

from .api import Ctx, Endpoint, fields_set
from .rows import impact_ids, service_ids, team_row, with_team
from .schemas import (
    IncidentIn,
    IncidentOut,
    IncidentPatch,
    MaintenanceIn,
    MaintenanceOut,
    MaintenancePatch,
    UpdateIn,
    UpdateOut,
    UpdatePatch,
)


def _incident(ctx: Ctx, conn: Connection, incident_id: int | None = None) -> Any:
    return team_row(ctx, conn, incident_table, "incident", incident_id)


def _incident_out(conn: Connection, row: Any) -> IncidentOut:
    affected = conn.execute(
        sa.select(incident_services.c.service_id, incident_services.c.impact)
        .where(incident_services.c.incident_id == row.id)
        .order_by(incident_services.c.service_id)
    ).all()
    return IncidentOut.model_validate(
        {
            **row._mapping,
            "team": row.team_key,
            "services": [{"service_id": s, "impact": i} for s, i in affected],
        }
    )


def _not_future(value: Any, name: str) -> None:
    if value is not None and value > utcnow():
        raise FieldErrors([{"field": name, "message": f"{name} is in the future"}])


def list_incidents(ctx: Ctx) -> list[IncidentOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            with_team(incident_table)
            .where(ctx.scope(incident_table.c.team_id))
            .order_by(incident_table.c.started_at.desc(), incident_table.c.id.desc())
            .limit(500)
        ).all()
        return [_incident_out(conn, r) for r in rows]


def get_incident(ctx: Ctx) -> IncidentOut:
    with ctx.store.read() as conn:
        return _incident_out(conn, _incident(ctx, conn))


def create_incident(ctx: Ctx) -> IncidentOut:
    body: IncidentIn = ctx.body
    _not_future(body.started_at, "started_at")
    with ctx.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        incident_id = incidents.create(
            conn,
            team_id=team_id,
            title=body.title,
            message=body.message,
            status=body.status,
            impacts=impact_ids(conn, [team_id], body.impacts),
            started_at=body.started_at,
            author=ctx.who.actor,
            notify=body.notify,
            impact_override=body.impact_override,
            actor=ctx.who.actor,
        )
        return _incident_out(conn, _incident(ctx, conn, incident_id))


def update_incident(ctx: Ctx) -> IncidentOut:
    changes = fields_set(ctx.body)
    with ctx.begin() as conn:
        row = _incident(ctx, conn)
        _not_future(changes.get("started_at"), "started_at")
        incidents.edit(
            conn,
            row.id,
            title=changes.get("title"),
            started_at=changes.get("started_at"),
            impact_override=changes.get("impact_override"),
            clear_impact_override="impact_override" in changes
            and changes["impact_override"] is None,
            author=ctx.who.actor,
            actor=ctx.who.actor,
        )
        return _incident_out(conn, _incident(ctx, conn))


def delete_incident(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = _incident(ctx, conn)
        incidents.delete(conn, row.id, actor=ctx.who.actor)


def take_over_incident(ctx: Ctx) -> IncidentOut:
    with ctx.begin() as conn:
        row = _incident(ctx, conn)
        incidents.take_over(conn, row.id, ctx.who.actor)
        return _incident_out(conn, _incident(ctx, conn))


# --- updates -----------------------------------------------------------------------------------


def _update_row(ctx: Ctx, conn: Connection) -> Any:
    row = conn.execute(
        sa.select(incident_updates).where(
            incident_updates.c.id == ctx.ids["update_id"],
            incident_updates.c.incident_id == ctx.id,
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no update {ctx.ids['update_id']} on incident {ctx.id}")
    return row


def list_updates(ctx: Ctx) -> list[UpdateOut]:
    with ctx.store.read() as conn:
        row = _incident(ctx, conn)
        rows = conn.execute(
            sa.select(incident_updates)
            .where(incident_updates.c.incident_id == row.id)
            .order_by(incident_updates.c.display_at.desc(), incident_updates.c.id.desc())
        )
        return [UpdateOut.model_validate(r) for r in rows]


def get_update(ctx: Ctx) -> UpdateOut:
    with ctx.store.read() as conn:
        _incident(ctx, conn)
        return UpdateOut.model_validate(_update_row(ctx, conn))


def create_update(ctx: Ctx) -> UpdateOut:
    body: UpdateIn = ctx.body
    _not_future(body.display_at, "display_at")
    with ctx.begin() as conn:
        row = _incident(ctx, conn)
        update_id = incidents.post_update(
            conn,
            row.id,
            status=body.status,
            message=body.message,
            author=ctx.who.actor,
            impacts=impact_ids(conn, [row.team_id], body.impacts),
            display_at=body.display_at,
            notify=body.notify,
            actor=ctx.who.actor,
        )
        ctx.ids["update_id"] = update_id
        return UpdateOut.model_validate(_update_row(ctx, conn))


def edit_update(ctx: Ctx) -> UpdateOut:
    changes = {k: v for k, v in fields_set(ctx.body).items() if v is not None}
    _not_future(changes.get("display_at"), "display_at")
    with ctx.begin() as conn:
        row = _incident(ctx, conn)
        incidents.edit_update(
            conn,
            row.id,
            ctx.ids["update_id"],
            message=changes.get("message"),
            display_at=changes.get("display_at"),
            actor=ctx.who.actor,
        )
        return UpdateOut.model_validate(_update_row(ctx, conn))


def delete_update(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = _incident(ctx, conn)
        incidents.delete_update(conn, row.id, ctx.ids["update_id"], actor=ctx.who.actor)


# --- maintenance windows -------------------------------------------------------------------


def _window(ctx: Ctx, conn: Connection, window_id: int | None = None) -> Any:
    return team_row(ctx, conn, maintenance_windows, "maintenance window", window_id)


def _window_out(conn: Connection, row: Any) -> MaintenanceOut:
    ids = conn.execute(
        sa.select(maintenance_services.c.service_id)
        .where(maintenance_services.c.window_id == row.id)
        .order_by(maintenance_services.c.service_id)
    ).scalars()
    return MaintenanceOut.model_validate(
        {**row._mapping, "team": row.team_key, "services": list(ids)}
    )


def list_windows(ctx: Ctx) -> list[MaintenanceOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            with_team(maintenance_windows)
            .where(ctx.scope(maintenance_windows.c.team_id))
            .order_by(maintenance_windows.c.starts_at.desc())
            .limit(500)
        ).all()
        return [_window_out(conn, r) for r in rows]


def get_window(ctx: Ctx) -> MaintenanceOut:
    with ctx.store.read() as conn:
        return _window_out(conn, _window(ctx, conn))


def create_window(ctx: Ctx) -> MaintenanceOut:
    body: MaintenanceIn = ctx.body
    if body.ends_at <= body.starts_at:
        raise FieldErrors([{"field": "ends_at", "message": "ends_at must be after starts_at"}])
    with ctx.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        window_id = maintenance.create(
            conn,
            team_id=team_id,
            key=body.key,
            title=body.title,
            message=body.message,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            service_ids=service_ids(conn, [team_id], body.services, "services"),
            notify=body.notify,
            on_end=body.on_end,
            actor=ctx.who.actor,
        )
        return _window_out(conn, _window(ctx, conn, window_id))


def update_window(ctx: Ctx) -> MaintenanceOut:
    changes = {k: v for k, v in fields_set(ctx.body).items() if v is not None}
    with ctx.begin() as conn:
        row = _window(ctx, conn)
        start = changes.get("starts_at", row.starts_at)
        end = changes.get("ends_at", row.ends_at)
        if end <= start:
            raise FieldErrors([{"field": "ends_at", "message": "ends_at must be after starts_at"}])
        if changes:
            if "services" in changes:
                changes["services"] = service_ids(
                    conn, [row.team_id], changes["services"], "services"
                )
            maintenance.update(
                conn,
                row.id,
                title=changes.get("title"),
                message=changes.get("message"),
                starts_at=changes.get("starts_at"),
                ends_at=changes.get("ends_at"),
                service_ids=changes.get("services"),
                notify=changes.get("notify"),
                on_end=changes.get("on_end"),
                actor=ctx.who.actor,
            )
        return _window_out(conn, _window(ctx, conn))


def delete_window(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = _window(ctx, conn)
        maintenance.delete(conn, row.id, actor=ctx.who.actor)


INC = "/api/v1/incidents"
U = INC + "/{id:int}/updates"
M = "/api/v1/maintenance-windows"
ENDPOINTS = [
    Endpoint(
        "GET",
        INC,
        list_incidents,
        "List incidents (newest first)",
        "incidents",
        response=IncidentOut,
        many=True,
    ),
    Endpoint(
        "POST",
        INC,
        create_incident,
        "Open (or backdate) an incident",
        "incidents",
        IncidentIn,
        IncidentOut,
        status=201,
    ),
    Endpoint(
        "GET", INC + "/{id:int}", get_incident, "Get an incident", "incidents", response=IncidentOut
    ),
    Endpoint(
        "PATCH",
        INC + "/{id:int}",
        update_incident,
        "Change title, start or impact override",
        "incidents",
        IncidentPatch,
        IncidentOut,
    ),
    Endpoint(
        "DELETE", INC + "/{id:int}", delete_incident, "Delete an incident", "incidents", status=204
    ),
    Endpoint(
        "POST",
        INC + "/{id:int}/take-over",
        take_over_incident,
        "Take an automated incident over",
        "incidents",
        response=IncidentOut,
    ),
    Endpoint(
        "GET",
        U,
        list_updates,
        "List an incident's updates",
        "incidents",
        response=UpdateOut,
        many=True,
    ),
    Endpoint(
        "POST",
        U,
        create_update,
        "Post an update (status, message, impacts)",
        "incidents",
        UpdateIn,
        UpdateOut,
        status=201,
    ),
    Endpoint(
        "GET", U + "/{update_id:int}", get_update, "Get an update", "incidents", response=UpdateOut
    ),
    Endpoint(
        "PATCH",
        U + "/{update_id:int}",
        edit_update,
        "Edit an update's text or time",
        "incidents",
        UpdatePatch,
        UpdateOut,
    ),
    Endpoint(
        "DELETE", U + "/{update_id:int}", delete_update, "Delete an update", "incidents", status=204
    ),
    Endpoint(
        "GET",
        M,
        list_windows,
        "List maintenance windows",
        "maintenance",
        response=MaintenanceOut,
        many=True,
    ),
    Endpoint(
        "POST",
        M,
        create_window,
        "Schedule a maintenance window",
        "maintenance",
        MaintenanceIn,
        MaintenanceOut,
        status=201,
    ),
    Endpoint(
        "GET",
        M + "/{id:int}",
        get_window,
        "Get a maintenance window",
        "maintenance",
        response=MaintenanceOut,
    ),
    Endpoint(
        "PATCH",
        M + "/{id:int}",
        update_window,
        "Change a maintenance window",
        "maintenance",
        MaintenancePatch,
        MaintenanceOut,
    ),
    Endpoint(
        "DELETE",
        M + "/{id:int}",
        delete_window,
        "Delete a maintenance window",
        "maintenance",
        status=204,
    ),
]
