"""Services (with manual status overrides) and service groups over the admin API: the
objects of one team, each visible only to its team and to admins.

Writes go through `engine.services` and `engine.overrides` (validate -> call -> serialise):
the engine re-lays out the pages showing a service whose group changed, whoever changes it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import overrides
from engine import services as service_writes
from engine.changes import UNSET
from engine.errors import NotFoundError
from engine.tables import services, teams, utcnow

from .api import Ctx, Endpoint, fields_set
from .rows import service_ids, team_row, with_team
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
    fields = service_writes.ServiceFields(
        key=body.key,
        name=body.name,
        description=body.description,
        group=body.group,
        position=body.position,
    )
    with ctx.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        service_id = service_writes.create(conn, team_id, fields, actor=ctx.who.actor)
        return _service_out(team_row(ctx, conn, services, "service", service_id))


def update_service(ctx: Ctx) -> ServiceOut:
    # A null `group` takes the service out of its group; other nulls change nothing.
    changes = {k: v for k, v in fields_set(ctx.body).items() if v is not None or k == "group"}
    with ctx.begin() as conn:
        row = team_row(ctx, conn, services, "service")
        service_writes.update(
            conn, row.id, service_writes.ServiceChanges(**changes), actor=ctx.who.actor
        )
        return _service_out(team_row(ctx, conn, services, "service"))


def delete_service(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = team_row(ctx, conn, services, "service")
        service_writes.delete(conn, row.id, actor=ctx.who.actor)


def set_override(ctx: Ctx) -> ServiceOut:
    body: OverrideIn = ctx.body
    with ctx.begin() as conn:
        row = team_row(ctx, conn, services, "service")
        overrides.set_override(
            conn, row.id, body.status, until=body.until, reason=body.reason, actor=ctx.who.actor
        )
        return _service_out(team_row(ctx, conn, services, "service"))


def clear_override(ctx: Ctx) -> ServiceOut:
    with ctx.begin() as conn:
        row = team_row(ctx, conn, services, "service")
        overrides.clear_override(conn, row.id, actor=ctx.who.actor)
        return _service_out(team_row(ctx, conn, services, "service"))


# --- groups (a team's services that share a `group`) --------------------------------------------


def _team(ctx: Ctx, conn: Connection) -> Any:
    team = conn.execute(sa.select(teams).where(teams.c.id == ctx.id)).first()
    if team is None:
        raise NotFoundError(f"no team {ctx.id}")
    ctx.check(conn, [team.id], f"team {ctx.id}")
    return team


def _group(ctx: Ctx, conn: Connection) -> GroupOut:
    team = _team(ctx, conn)
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


def list_groups(ctx: Ctx) -> list[GroupOut]:
    with ctx.store.read() as conn:
        team = _team(ctx, conn)
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
    with ctx.begin() as conn:
        team = _team(ctx, conn)
        members = service_ids(conn, [team.id], body.services, "services")
        service_writes.create_group(conn, team.id, body.name, members, actor=ctx.who.actor)
        ctx.names["name"] = body.name
        return _group(ctx, conn)


def update_group(ctx: Ctx) -> GroupOut:
    body: GroupPatch = ctx.body
    with ctx.begin() as conn:
        current = _group(ctx, conn)
        members = (
            service_ids(conn, [ctx.id], body.services, "services")
            if body.services is not None
            else UNSET
        )
        service_writes.update_group(
            conn,
            ctx.id,
            current.name,
            new_name=body.name or UNSET,
            service_ids=members,
            actor=ctx.who.actor,
        )
        ctx.names["name"] = body.name or current.name
        return _group(ctx, conn)


def delete_group(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        current = _group(ctx, conn)
        service_writes.delete_group(conn, ctx.id, current.name, actor=ctx.who.actor)


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
