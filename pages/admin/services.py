"""Services (with manual status overrides) and service groups over the admin API: the
objects of one team, each visible only to its team and to admins."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import crud, overrides
from engine.errors import ConflictError, NotFoundError
from engine.tables import page_services, services, teams, utcnow
from pages.errors import FieldErrors

from .api import Ctx, Endpoint, fields_set
from .rows import ensure_unique, insert, service_ids, team_row, with_team
from .schemas import (
    GroupIn,
    GroupOut,
    GroupPatch,
    OverrideIn,
    ServiceIn,
    ServiceOut,
    ServicePatch,
)

# --- services --------------------------------------------------------------------------------


def _service_out(row: Any) -> ServiceOut:
    override = None
    # An expired override no longer counts (engine.status); its fields stay until replaced.
    if row.override_status and (row.override_until is None or row.override_until > utcnow()):
        override = {
            "status": row.override_status,
            "until": row.override_until,
            "reason": row.override_reason,
            "by": row.override_by,
        }
    return ServiceOut.model_validate(
        {**row._mapping, "team": row.team_key, "group": row.group_name, "override": override}
    )


def _services_in_team(conn: Connection, team_id: int, ids: list[int], field: str) -> None:
    found = set(
        conn.execute(
            sa.select(services.c.id).where(services.c.id.in_(ids), services.c.team_id == team_id)
        ).scalars()
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise FieldErrors([{"field": field, "message": f"no service {missing[0]} in this team"}])


def list_services(ctx: Ctx) -> list[ServiceOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            with_team(services).where(ctx.scope(services.c.team_id)).order_by(services.c.id)
        )
        return [_service_out(r) for r in rows]


def get_service(ctx: Ctx) -> ServiceOut:
    with ctx.store.read() as conn:
        return _service_out(team_row(ctx, conn, services, "service"))


def create_service(ctx: Ctx) -> ServiceOut:
    body: ServiceIn = ctx.body
    with ctx.store.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        ensure_unique(conn, services, team_id, body.key, "service")
        values = body.model_dump(exclude={"team", "group"})
        service_id = insert(
            conn, services, {**values, "team_id": team_id, "group_name": body.group}
        )
        ctx.audit(conn, "create", "service", body.key, team_id)
        return _service_out(team_row(ctx, conn, services, "service", service_id))


def update_service(ctx: Ctx) -> ServiceOut:
    changes = fields_set(ctx.body)
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, services, "service")
        values = {k: v for k, v in changes.items() if k != "group" and v is not None}
        if "group" in changes:
            values["group_name"] = changes["group"]
        if values:
            conn.execute(
                services.update()
                .where(services.c.id == row.id)
                .values(**values, updated_at=utcnow())
            )
            if "group_name" in values or "position" in values:
                crud.relayout_pages_of(conn, [row.id])
            crud.pages_dirty(conn, service_ids=[row.id])
            ctx.audit(conn, "update", "service", row.key, row.team_id, fields=sorted(changes))
        return _service_out(team_row(ctx, conn, services, "service"))


def delete_service(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, services, "service")
        pages = conn.execute(
            sa.select(page_services.c.page_id).where(page_services.c.service_id == row.id)
        ).scalars()
        crud.pages_dirty(conn, page_ids=list(pages))
        conn.execute(services.delete().where(services.c.id == row.id))
        ctx.audit(conn, "delete", "service", row.key, row.team_id)


def set_override(ctx: Ctx) -> ServiceOut:
    body: OverrideIn = ctx.body
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, services, "service")
        overrides.set_override(
            conn, row.id, body.status, until=body.until, reason=body.reason, by=ctx.who.actor
        )
        ctx.audit(conn, "override", "service", row.key, row.team_id, status=str(body.status))
        return _service_out(team_row(ctx, conn, services, "service"))


def clear_override(ctx: Ctx) -> ServiceOut:
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, services, "service")
        overrides.clear_override(conn, row.id, by=ctx.who.actor)
        ctx.audit(conn, "clear override", "service", row.key, row.team_id)
        return _service_out(team_row(ctx, conn, services, "service"))


# --- groups (a team's services that share a `group`) --------------------------------------------


def _group(ctx: Ctx, conn: Connection) -> GroupOut:
    team = conn.execute(sa.select(teams).where(teams.c.id == ctx.id)).first()
    if team is None:
        raise NotFoundError(f"no team {ctx.id}")
    ctx.check(conn, [team.id], f"team {ctx.id}")
    name = ctx.names["name"]
    ids = (
        conn.execute(
            sa.select(services.c.id)
            .where(services.c.team_id == team.id, services.c.group_name == name)
            .order_by(services.c.position, services.c.id)
        )
        .scalars()
        .all()
    )
    if not ids:
        raise NotFoundError(f"no group {name!r} in team {team.key!r}")
    return GroupOut(team=team.key, name=name, services=list(ids))


def _regroup(ctx: Ctx, conn: Connection, team_id: int, name: str | None, ids: list[int]) -> None:
    conn.execute(
        services.update().where(services.c.id.in_(ids)).values(group_name=name, updated_at=utcnow())
    )
    crud.relayout_pages_of(conn, ids)
    crud.pages_dirty(conn, service_ids=ids)


def list_groups(ctx: Ctx) -> list[GroupOut]:
    with ctx.store.read() as conn:
        team = conn.execute(sa.select(teams).where(teams.c.id == ctx.id)).first()
        if team is None:
            raise NotFoundError(f"no team {ctx.id}")
        ctx.check(conn, [team.id], f"team {ctx.id}")
        groups: dict[str, list[int]] = {}
        for sid, name in conn.execute(
            sa.select(services.c.id, services.c.group_name)
            .where(services.c.team_id == team.id, services.c.group_name.isnot(None))
            .order_by(services.c.position, services.c.id)
        ):
            groups.setdefault(name, []).append(sid)
        return [GroupOut(team=team.key, name=n, services=ids) for n, ids in sorted(groups.items())]


def get_group(ctx: Ctx) -> GroupOut:
    with ctx.store.read() as conn:
        return _group(ctx, conn)


def create_group(ctx: Ctx) -> GroupOut:
    body: GroupIn = ctx.body
    with ctx.store.begin() as conn:
        team = conn.execute(sa.select(teams).where(teams.c.id == ctx.id)).first()
        if team is None:
            raise NotFoundError(f"no team {ctx.id}")
        ctx.check(conn, [team.id], f"team {ctx.id}")
        exists = conn.execute(
            sa.select(services.c.id).where(
                services.c.team_id == team.id, services.c.group_name == body.name
            )
        ).first()
        if exists:
            raise ConflictError(f"a group named {body.name!r} exists in this team")
        members = service_ids(conn, [team.id], body.services, "services")
        _services_in_team(conn, team.id, members, "services")
        _regroup(ctx, conn, team.id, body.name, members)
        ctx.audit(conn, "create", "group", body.name, team.id)
        ctx.names["name"] = body.name
        return _group(ctx, conn)


def update_group(ctx: Ctx) -> GroupOut:
    body: GroupPatch = ctx.body
    with ctx.store.begin() as conn:
        current = _group(ctx, conn)
        team_id = ctx.id
        name = body.name or current.name
        members = (
            service_ids(conn, [team_id], body.services, "services")
            if body.services is not None
            else current.services
        )
        _services_in_team(conn, team_id, members, "services")
        if body.name and body.name != current.name:
            clash = conn.execute(
                sa.select(services.c.id).where(
                    services.c.team_id == team_id, services.c.group_name == body.name
                )
            ).first()
            if clash:
                raise ConflictError(f"a group named {body.name!r} exists in this team")
        left = [sid for sid in current.services if sid not in members]
        if left:
            _regroup(ctx, conn, team_id, None, left)
        _regroup(ctx, conn, team_id, name, members)
        ctx.audit(conn, "update", "group", current.name, team_id, name=name)
        ctx.names["name"] = name
        return _group(ctx, conn)


def delete_group(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        current = _group(ctx, conn)
        _regroup(ctx, conn, ctx.id, None, current.services)
        ctx.audit(conn, "delete", "group", current.name, ctx.id)


S = "/api/v1/services"
G = "/api/v1/teams/{id:int}/groups"
ENDPOINTS = [
    Endpoint("GET", S, list_services, "List services", "services", response=ServiceOut, many=True),
    Endpoint(
        "POST", S, create_service, "Create a service", "services", ServiceIn, ServiceOut, status=201
    ),
    Endpoint("GET", S + "/{id:int}", get_service, "Get a service", "services", response=ServiceOut),
    Endpoint(
        "PATCH",
        S + "/{id:int}",
        update_service,
        "Change a service",
        "services",
        ServicePatch,
        ServiceOut,
    ),
    Endpoint("DELETE", S + "/{id:int}", delete_service, "Delete a service", "services", status=204),
    Endpoint(
        "PUT",
        S + "/{id:int}/override",
        set_override,
        "Set a manual status override",
        "services",
        OverrideIn,
        ServiceOut,
    ),
    Endpoint(
        "DELETE",
        S + "/{id:int}/override",
        clear_override,
        "Clear the manual status override",
        "services",
        response=ServiceOut,
    ),
    Endpoint(
        "GET",
        G,
        list_groups,
        "List a team's service groups",
        "groups",
        response=GroupOut,
        many=True,
    ),
    Endpoint("POST", G, create_group, "Group services", "groups", GroupIn, GroupOut, status=201),
    Endpoint("GET", G + "/{name}", get_group, "Get a group", "groups", response=GroupOut),
    Endpoint(
        "PATCH",
        G + "/{name}",
        update_group,
        "Rename a group or change its services",
        "groups",
        GroupPatch,
        GroupOut,
    ),
    Endpoint(
        "DELETE", G + "/{name}", delete_group, "Ungroup a group's services", "groups", status=204
    ),
]
