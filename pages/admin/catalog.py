"""Services (with manual status overrides), service groups, incident templates and alert
sources: the objects of one team, each visible only to its team and to admins."""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import crud, overrides
from engine.config.sources import source_problems
from engine.errors import ConflictError, NotFoundError
from engine.tables import alert_sources, incident_templates, page_services, services, teams, utcnow
from pages.errors import FieldErrors

from .api import Ctx, Endpoint, fields_set
from .schemas import (
    AlertSourceIn,
    AlertSourceOut,
    AlertSourcePatch,
    GroupIn,
    GroupOut,
    GroupPatch,
    OverrideIn,
    ServiceIn,
    ServiceOut,
    ServicePatch,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
)


def _with_team(table: sa.Table) -> Any:
    return sa.select(table, teams.c.key.label("team_key")).join(
        teams, teams.c.id == table.c.team_id
    )


def _row(ctx: Ctx, conn: Connection, table: sa.Table, what: str, row_id: int | None = None) -> Any:
    row_id = row_id or ctx.id
    row = conn.execute(_with_team(table).where(table.c.id == row_id)).first()
    if row is None or not ctx.who.can_see_team(row.team_id):
        raise NotFoundError(f"no {what} {row_id}")
    return row


def _unique(conn: Connection, table: sa.Table, team_id: int, key: str, what: str) -> None:
    found = conn.execute(
        sa.select(table.c.id).where(table.c.team_id == team_id, table.c.key == key)
    ).first()
    if found:
        raise ConflictError(f"a {what} with key {key!r} exists in this team")


def _insert(conn: Connection, table: sa.Table, values: dict[str, Any]) -> int:
    inserted = conn.execute(table.insert().values(**values)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


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
            _with_team(services).where(ctx.scope(services.c.team_id)).order_by(services.c.id)
        )
        return [_service_out(r) for r in rows]


def get_service(ctx: Ctx) -> ServiceOut:
    with ctx.store.read() as conn:
        return _service_out(_row(ctx, conn, services, "service"))


def create_service(ctx: Ctx) -> ServiceOut:
    body: ServiceIn = ctx.body
    with ctx.store.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        _unique(conn, services, team_id, body.key, "service")
        values = body.model_dump(exclude={"team", "group"})
        service_id = _insert(
            conn, services, {**values, "team_id": team_id, "group_name": body.group}
        )
        ctx.audit(conn, "create", "service", body.key, team_id)
        return _service_out(_row(ctx, conn, services, "service", service_id))


def update_service(ctx: Ctx) -> ServiceOut:
    changes = fields_set(ctx.body)
    with ctx.store.begin() as conn:
        row = _row(ctx, conn, services, "service")
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
        return _service_out(_row(ctx, conn, services, "service"))


def delete_service(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        row = _row(ctx, conn, services, "service")
        pages = conn.execute(
            sa.select(page_services.c.page_id).where(page_services.c.service_id == row.id)
        ).scalars()
        crud.pages_dirty(conn, page_ids=list(pages))
        conn.execute(services.delete().where(services.c.id == row.id))
        ctx.audit(conn, "delete", "service", row.key, row.team_id)


def set_override(ctx: Ctx) -> ServiceOut:
    body: OverrideIn = ctx.body
    with ctx.store.begin() as conn:
        row = _row(ctx, conn, services, "service")
        overrides.set_override(
            conn, row.id, body.status, until=body.until, reason=body.reason, by=ctx.who.actor
        )
        ctx.audit(conn, "override", "service", row.key, row.team_id, status=str(body.status))
        return _service_out(_row(ctx, conn, services, "service"))


def clear_override(ctx: Ctx) -> ServiceOut:
    with ctx.store.begin() as conn:
        row = _row(ctx, conn, services, "service")
        overrides.clear_override(conn, row.id, by=ctx.who.actor)
        ctx.audit(conn, "clear override", "service", row.key, row.team_id)
        return _service_out(_row(ctx, conn, services, "service"))


# --- groups (a team's services that share a `group`) --------------------------------------------


def _group(ctx: Ctx, conn: Connection) -> GroupOut:
    team = conn.execute(sa.select(teams).where(teams.c.id == ctx.id)).first()
    if team is None or not ctx.who.can_see_team(team.id):
        raise NotFoundError(f"no team {ctx.id}")
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
        if team is None or not ctx.who.can_see_team(team.id):
            raise NotFoundError(f"no team {ctx.id}")
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
        if team is None or not ctx.who.can_see_team(team.id):
            raise NotFoundError(f"no team {ctx.id}")
        exists = conn.execute(
            sa.select(services.c.id).where(
                services.c.team_id == team.id, services.c.group_name == body.name
            )
        ).first()
        if exists:
            raise ConflictError(f"a group named {body.name!r} exists in this team")
        _services_in_team(conn, team.id, body.services, "services")
        _regroup(ctx, conn, team.id, body.name, body.services)
        ctx.audit(conn, "create", "group", body.name, team.id)
        ctx.names["name"] = body.name
        return _group(ctx, conn)


def update_group(ctx: Ctx) -> GroupOut:
    body: GroupPatch = ctx.body
    with ctx.store.begin() as conn:
        current = _group(ctx, conn)
        team_id = ctx.id
        name = body.name or current.name
        members = body.services if body.services is not None else current.services
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


# --- incident templates --------------------------------------------------------------------------


def _template_out(row: Any) -> TemplateOut:
    return TemplateOut.model_validate({**row._mapping, "team": row.team_key})


def _template_services(conn: Connection, team_id: int, keys: dict[str, Any]) -> None:
    found = set(
        conn.execute(
            sa.select(services.c.key).where(
                services.c.team_id == team_id, services.c.key.in_(list(keys))
            )
        ).scalars()
    )
    missing = [k for k in keys if k not in found]
    if missing:
        raise FieldErrors(
            [
                {
                    "field": f"services.{missing[0]}",
                    "message": f"no service {missing[0]!r} in this team",
                }
            ]
        )


def list_templates(ctx: Ctx) -> list[TemplateOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            _with_team(incident_templates)
            .where(ctx.scope(incident_templates.c.team_id))
            .order_by(incident_templates.c.id)
        )
        return [_template_out(r) for r in rows]


def get_template(ctx: Ctx) -> TemplateOut:
    with ctx.store.read() as conn:
        return _template_out(_row(ctx, conn, incident_templates, "incident template"))


def _check_template_text(values: dict[str, Any]) -> None:
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    for name in ("title", "message", "resolve_message"):
        if values.get(name):
            try:
                SandboxedEnvironment().parse(values[name])
            except TemplateSyntaxError as exc:
                raise FieldErrors(
                    [{"field": name, "message": f"template syntax: {exc.message}"}]
                ) from None


def create_template(ctx: Ctx) -> TemplateOut:
    body: TemplateIn = ctx.body
    values = body.model_dump(mode="json", exclude={"team"})
    _check_template_text(values)
    with ctx.store.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        _unique(conn, incident_templates, team_id, body.key, "incident template")
        _template_services(conn, team_id, body.services)
        row_id = _insert(conn, incident_templates, {**values, "team_id": team_id})
        ctx.audit(conn, "create", "incident template", body.key, team_id)
        return _template_out(_row(ctx, conn, incident_templates, "incident template", row_id))


def update_template(ctx: Ctx) -> TemplateOut:
    body: TemplatePatch = ctx.body
    values = {
        k: v for k, v in body.model_dump(mode="json", exclude_unset=True).items() if v is not None
    }
    _check_template_text(values)
    with ctx.store.begin() as conn:
        row = _row(ctx, conn, incident_templates, "incident template")
        if "services" in values:
            _template_services(conn, row.team_id, values["services"])
        if values:
            conn.execute(
                incident_templates.update()
                .where(incident_templates.c.id == row.id)
                .values(**values, updated_at=utcnow())
            )
            ctx.audit(
                conn, "update", "incident template", row.key, row.team_id, fields=sorted(values)
            )
        return _template_out(_row(ctx, conn, incident_templates, "incident template"))


def delete_template(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        row = _row(ctx, conn, incident_templates, "incident template")
        conn.execute(incident_templates.delete().where(incident_templates.c.id == row.id))
        ctx.audit(conn, "delete", "incident template", row.key, row.team_id)


# --- alert sources -----------------------------------------------------------------------------


def _source_out(ctx: Ctx, row: Any) -> AlertSourceOut:
    return AlertSourceOut.model_validate(
        {
            **row._mapping,
            "team": row.team_key,
            "webhook_url": f"{ctx.base_url}/api/v1/events/{row.integration_key}",
            "has_signing_secret": bool(row.signing_secret),
            "settings": dict(row.settings or {}),
        }
    )


def _check_source(source_type: str, settings: dict[str, Any]) -> None:
    problems = source_problems(source_type, settings)
    if problems:
        raise FieldErrors(
            [{"field": ".".join(str(p) for p in path), "message": m} for path, m in problems]
        )


def _key_free(conn: Connection, key: str) -> None:
    taken = conn.execute(
        sa.select(alert_sources.c.id).where(
            sa.or_(
                alert_sources.c.integration_key == key,
                alert_sources.c.previous_integration_key == key,
            )
        )
    ).first()
    if taken:
        raise ConflictError("that integration key is already in use")


def list_sources(ctx: Ctx) -> list[AlertSourceOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            _with_team(alert_sources)
            .where(ctx.scope(alert_sources.c.team_id))
            .order_by(alert_sources.c.id)
        )
        return [_source_out(ctx, r) for r in rows]


def get_source(ctx: Ctx) -> AlertSourceOut:
    with ctx.store.read() as conn:
        return _source_out(ctx, _row(ctx, conn, alert_sources, "alert source"))


def create_source(ctx: Ctx) -> AlertSourceOut:
    body: AlertSourceIn = ctx.body
    _check_source(body.type, body.settings)
    with ctx.store.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        _unique(conn, alert_sources, team_id, body.key, "alert source")
        key = body.integration_key or secrets.token_urlsafe(24)
        _key_free(conn, key)
        values = body.model_dump(exclude={"team"})
        row_id = _insert(
            conn, alert_sources, {**values, "integration_key": key, "team_id": team_id}
        )
        ctx.audit(conn, "create", "alert source", body.key, team_id)
        return _source_out(ctx, _row(ctx, conn, alert_sources, "alert source", row_id))


def update_source(ctx: Ctx) -> AlertSourceOut:
    changes = fields_set(ctx.body)
    with ctx.store.begin() as conn:
        row = _row(ctx, conn, alert_sources, "alert source")
        values = {
            k: v
            for k, v in changes.items()
            if v is not None or k in ("signing_secret", "rate_limit")
        }
        if "settings" in values:
            _check_source(row.type, values["settings"])
        if values:
            conn.execute(
                alert_sources.update()
                .where(alert_sources.c.id == row.id)
                .values(**values, updated_at=utcnow())
            )
            ctx.audit(conn, "update", "alert source", row.key, row.team_id, fields=sorted(values))
        return _source_out(ctx, _row(ctx, conn, alert_sources, "alert source"))


def delete_source(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        row = _row(ctx, conn, alert_sources, "alert source")
        conn.execute(alert_sources.delete().where(alert_sources.c.id == row.id))
        ctx.audit(conn, "delete", "alert source", row.key, row.team_id)


S = "/api/v1/services"
G = "/api/v1/teams/{id:int}/groups"
T = "/api/v1/incident-templates"
A = "/api/v1/alert-sources"
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
    Endpoint(
        "GET",
        T,
        list_templates,
        "List incident templates",
        "incident templates",
        response=TemplateOut,
        many=True,
    ),
    Endpoint(
        "POST",
        T,
        create_template,
        "Create an incident template",
        "incident templates",
        TemplateIn,
        TemplateOut,
        status=201,
    ),
    Endpoint(
        "GET",
        T + "/{id:int}",
        get_template,
        "Get an incident template",
        "incident templates",
        response=TemplateOut,
    ),
    Endpoint(
        "PATCH",
        T + "/{id:int}",
        update_template,
        "Change an incident template",
        "incident templates",
        TemplatePatch,
        TemplateOut,
    ),
    Endpoint(
        "DELETE",
        T + "/{id:int}",
        delete_template,
        "Delete an incident template",
        "incident templates",
        status=204,
    ),
    Endpoint(
        "GET",
        A,
        list_sources,
        "List alert sources",
        "alert sources",
        response=AlertSourceOut,
        many=True,
    ),
    Endpoint(
        "POST",
        A,
        create_source,
        "Create an alert source",
        "alert sources",
        AlertSourceIn,
        AlertSourceOut,
        status=201,
    ),
    Endpoint(
        "GET",
        A + "/{id:int}",
        get_source,
        "Get an alert source",
        "alert sources",
        response=AlertSourceOut,
    ),
    Endpoint(
        "PATCH",
        A + "/{id:int}",
        update_source,
        "Change an alert source",
        "alert sources",
        AlertSourcePatch,
        AlertSourceOut,
    ),
    Endpoint(
        "DELETE",
        A + "/{id:int}",
        delete_source,
        "Delete an alert source",
        "alert sources",
        status=204,
    ),
]
