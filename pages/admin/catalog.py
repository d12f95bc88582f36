"""Incident templates, alert sources and notification channels over the admin API: the
objects of one team, each visible only to its team and to admins."""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.alert_sources import source_problems
from adapters.channels import CHANNEL_TARGET
from engine.activations_store import forget_source_alerts
from engine.errors import ConflictError
from engine.tables import alert_sources, channels, incident_templates, services, utcnow
from pages.errors import FieldErrors

from .api import Ctx, Endpoint, fields_set
from .rows import ensure_unique, insert, team_row, with_team
from .schemas import (
    AlertSourceIn,
    AlertSourceOut,
    AlertSourcePatch,
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
)

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
            with_team(incident_templates)
            .where(ctx.scope(incident_templates.c.team_id))
            .order_by(incident_templates.c.id)
        )
        return [_template_out(r) for r in rows]


def get_template(ctx: Ctx) -> TemplateOut:
    with ctx.store.read() as conn:
        return _template_out(team_row(ctx, conn, incident_templates, "incident template"))


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
        ensure_unique(conn, incident_templates, team_id, body.key, "incident template")
        _template_services(conn, team_id, body.services)
        row_id = insert(conn, incident_templates, {**values, "team_id": team_id})
        ctx.audit(conn, "create", "incident template", body.key, team_id)
        return _template_out(team_row(ctx, conn, incident_templates, "incident template", row_id))


def update_template(ctx: Ctx) -> TemplateOut:
    body: TemplatePatch = ctx.body
    values = {
        k: v for k, v in body.model_dump(mode="json", exclude_unset=True).items() if v is not None
    }
    _check_template_text(values)
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, incident_templates, "incident template")
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
        return _template_out(team_row(ctx, conn, incident_templates, "incident template"))


def delete_template(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, incident_templates, "incident template")
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
            with_team(alert_sources)
            .where(ctx.scope(alert_sources.c.team_id))
            .order_by(alert_sources.c.id)
        )
        return [_source_out(ctx, r) for r in rows]


def get_source(ctx: Ctx) -> AlertSourceOut:
    with ctx.store.read() as conn:
        return _source_out(ctx, team_row(ctx, conn, alert_sources, "alert source"))


def create_source(ctx: Ctx) -> AlertSourceOut:
    body: AlertSourceIn = ctx.body
    _check_source(body.type, body.settings)
    with ctx.store.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        ensure_unique(conn, alert_sources, team_id, body.key, "alert source")
        key = body.integration_key or secrets.token_urlsafe(24)
        _key_free(conn, key)
        values = body.model_dump(exclude={"team"})
        row_id = insert(conn, alert_sources, {**values, "integration_key": key, "team_id": team_id})
        ctx.audit(conn, "create", "alert source", body.key, team_id)
        return _source_out(ctx, team_row(ctx, conn, alert_sources, "alert source", row_id))


def update_source(ctx: Ctx) -> AlertSourceOut:
    changes = fields_set(ctx.body)
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, alert_sources, "alert source")
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
        return _source_out(ctx, team_row(ctx, conn, alert_sources, "alert source"))


def delete_source(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, alert_sources, "alert source")
        forget_source_alerts(conn, row.id)
        conn.execute(alert_sources.delete().where(alert_sources.c.id == row.id))
        ctx.audit(conn, "delete", "alert source", row.key, row.team_id)


# --- channels (a team's notification targets) ---------------------------------------------------


def _channel_out(row: Any) -> ChannelOut:
    config = dict(row.config or {})
    return ChannelOut.model_validate(
        {
            **row._mapping,
            "team": row.team_key,
            "url": config.get("url"),
            "address": config.get("address"),
            "has_secret": bool(config.get("secret")),
        }
    )


def _channel_config(channel_type: str, config: dict[str, Any]) -> dict[str, Any]:
    import adapters.channels as channel_pkg

    registry = getattr(channel_pkg, "CHANNELS", None)
    if isinstance(registry, dict) and registry and channel_type not in registry:
        known = ", ".join(sorted(registry))
        raise FieldErrors([{"field": "type", "message": f"unknown channel type (known: {known})"}])
    needed = CHANNEL_TARGET.get(channel_type)
    if needed and not config.get(needed):
        raise FieldErrors([{"field": needed, "message": f"a {channel_type} channel needs it"}])
    return {k: v for k, v in config.items() if v is not None}


def list_channels(ctx: Ctx) -> list[ChannelOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            with_team(channels).where(ctx.scope(channels.c.team_id)).order_by(channels.c.id)
        )
        return [_channel_out(r) for r in rows]


def get_channel(ctx: Ctx) -> ChannelOut:
    with ctx.store.read() as conn:
        return _channel_out(team_row(ctx, conn, channels, "channel"))


def create_channel(ctx: Ctx) -> ChannelOut:
    body: ChannelIn = ctx.body
    config = _channel_config(body.type, body.model_dump(include={"url", "address", "secret"}))
    with ctx.store.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        ensure_unique(conn, channels, team_id, body.key, "channel")
        values = {"key": body.key, "type": body.type, "enabled": body.enabled}
        row_id = insert(conn, channels, {**values, "config": config, "team_id": team_id})
        ctx.audit(conn, "create", "channel", body.key, team_id)
        return _channel_out(team_row(ctx, conn, channels, "channel", row_id))


def update_channel(ctx: Ctx) -> ChannelOut:
    changes = fields_set(ctx.body)
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, channels, "channel")
        config = dict(row.config or {})
        for name in ("url", "address", "secret"):
            if name in changes:
                config[name] = changes[name]
        values: dict[str, Any] = {"config": _channel_config(row.type, config)}
        if changes.get("enabled") is not None:
            values["enabled"] = changes["enabled"]
            if changes["enabled"]:
                values["disabled_reason"] = None
        conn.execute(
            channels.update().where(channels.c.id == row.id).values(**values, updated_at=utcnow())
        )
        ctx.audit(conn, "update", "channel", row.key, row.team_id, fields=sorted(changes))
        return _channel_out(team_row(ctx, conn, channels, "channel"))


def delete_channel(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        row = team_row(ctx, conn, channels, "channel")
        conn.execute(channels.delete().where(channels.c.id == row.id))
        ctx.audit(conn, "delete", "channel", row.key, row.team_id)


C = "/api/v1/channels"
T = "/api/v1/incident-templates"
A = "/api/v1/alert-sources"
ENDPOINTS = [
    Endpoint(
        "GET",
        C,
        list_channels,
        "List notification channels",
        "channels",
        response=ChannelOut,
        many=True,
    ),
    Endpoint(
        "POST",
        C,
        create_channel,
        "Create a notification channel",
        "channels",
        ChannelIn,
        ChannelOut,
        status=201,
    ),
    Endpoint("GET", C + "/{id:int}", get_channel, "Get a channel", "channels", response=ChannelOut),
    Endpoint(
        "PATCH",
        C + "/{id:int}",
        update_channel,
        "Change a channel",
        "channels",
        ChannelPatch,
        ChannelOut,
    ),
    Endpoint("DELETE", C + "/{id:int}", delete_channel, "Delete a channel", "channels", status=204),
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
