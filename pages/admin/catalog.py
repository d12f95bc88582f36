"""Incident templates, alert sources and notification channels over the admin API: the
objects of one team, each visible only to its team and to admins.

Each write validates what only the API knows (the adapters' registries, the caller's team),
calls the object's write function in `engine` (which keeps the invariants and audits), and
serialises the row.
"""

from __future__ import annotations

from typing import Any

from adapters.alert_sources import source_problems
from adapters.channels import CHANNELS
from engine import channels as channel_writes
from engine import sources as source_writes
from engine import templates as template_writes
from engine.changes import UNSET
from engine.tables import alert_sources, channels, incident_templates
from pages.errors import FieldErrors

from .api import Ctx, Endpoint, fields_set
from .rows import team_row, with_team
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


def create_template(ctx: Ctx) -> TemplateOut:
    body: TemplateIn = ctx.body
    fields = template_writes.TemplateFields(
        key=body.key,
        title=body.title,
        message=body.message,
        resolve_message=body.resolve_message,
        status=body.status,
        services=body.services,
    )
    with ctx.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        row_id = template_writes.create(conn, team_id, fields, actor=ctx.who.actor)
        return _template_out(team_row(ctx, conn, incident_templates, "incident template", row_id))


def update_template(ctx: Ctx) -> TemplateOut:
    # A null in the body leaves the field as it is (none of them can be cleared).
    changes = {k: v for k, v in fields_set(ctx.body).items() if v is not None}
    with ctx.begin() as conn:
        row = team_row(ctx, conn, incident_templates, "incident template")
        template_writes.update(
            conn, row.id, template_writes.TemplateChanges(**changes), actor=ctx.who.actor
        )
        return _template_out(team_row(ctx, conn, incident_templates, "incident template"))


def delete_template(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = team_row(ctx, conn, incident_templates, "incident template")
        template_writes.delete(conn, row.id, actor=ctx.who.actor)


# --- alert sources -----------------------------------------------------------------------------


def _source_out(ctx: Ctx, row: Any, new_key: str | None = None) -> AlertSourceOut:
    # The integration key is a secret, shown once: in the answer that made it (`new_key`),
    # to its maker. The store keeps a digest; listings show the last characters at most.
    shown = ctx.may_read_secrets(row.team_id)
    key = new_key if shown else None
    return AlertSourceOut.model_validate(
        {
            **row._mapping,
            "team": row.team_key,
            "integration_key": key,
            "webhook_url": f"{ctx.base_url}/api/v1/events/{key}" if key else None,
            "key_hint": row.key_hint if shown else None,
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
    key = body.integration_key or source_writes.new_integration_key()
    fields = source_writes.SourceFields(
        **body.model_dump(exclude={"team", "integration_key"}), integration_key=key
    )
    with ctx.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        row_id = source_writes.create(conn, team_id, fields, actor=ctx.who.actor)
        row = team_row(ctx, conn, alert_sources, "alert source", row_id)
        return _source_out(ctx, row, new_key=key)


#: Fields of a source that a PATCH's null removes; a null elsewhere leaves the field alone.
_CLEARABLE = ("signing_secret", "rate_limit")


def update_source(ctx: Ctx) -> AlertSourceOut:
    changes = {k: v for k, v in fields_set(ctx.body).items() if v is not None or k in _CLEARABLE}
    with ctx.begin() as conn:
        row = team_row(ctx, conn, alert_sources, "alert source")
        if "settings" in changes:
            _check_source(row.type, changes["settings"])
        source_writes.update(
            conn, row.id, source_writes.SourceChanges(**changes), actor=ctx.who.actor
        )
        return _source_out(ctx, team_row(ctx, conn, alert_sources, "alert source"))


def delete_source(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = team_row(ctx, conn, alert_sources, "alert source")
        source_writes.delete(conn, row.id, actor=ctx.who.actor)


# --- channels (a team's notification targets) ---------------------------------------------------


def _channel_out(ctx: Ctx, row: Any, new_url: str | None = None) -> ChannelOut:
    config = dict(row.config or {})
    # A chat hook's URL is its credential, kept encrypted: it is answered only to the request
    # that set it (`new_url`), never read back.
    shown = ctx.may_read_secrets(row.team_id)
    return ChannelOut.model_validate(
        {
            **row._mapping,
            "team": row.team_key,
            "url": new_url if shown else None,
            "address": config.get("address") if shown else None,
            "has_secret": bool(config.get("secret")),
        }
    )


def _check_channel_type(channel_type: str) -> None:
    if CHANNELS and channel_type not in CHANNELS:
        known = ", ".join(sorted(CHANNELS))
        raise FieldErrors([{"field": "type", "message": f"unknown channel type (known: {known})"}])


def list_channels(ctx: Ctx) -> list[ChannelOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            with_team(channels).where(ctx.scope(channels.c.team_id)).order_by(channels.c.id)
        )
        return [_channel_out(ctx, r) for r in rows]


def get_channel(ctx: Ctx) -> ChannelOut:
    with ctx.store.read() as conn:
        return _channel_out(ctx, team_row(ctx, conn, channels, "channel"))


def create_channel(ctx: Ctx) -> ChannelOut:
    body: ChannelIn = ctx.body
    _check_channel_type(body.type)
    fields = channel_writes.ChannelFields(
        key=body.key,
        type=body.type,
        config=body.model_dump(include={"url", "address", "secret"}),
        enabled=body.enabled,
    )
    with ctx.begin() as conn:
        team_id = ctx.team_id(conn, body.team)
        row_id = channel_writes.create(conn, team_id, fields, actor=ctx.who.actor)
        return _channel_out(ctx, team_row(ctx, conn, channels, "channel", row_id), body.url)


def update_channel(ctx: Ctx) -> ChannelOut:
    changes = fields_set(ctx.body)
    with ctx.begin() as conn:
        row = team_row(ctx, conn, channels, "channel")
        config = channel_writes.config_of(conn, row.config)
        for name in ("url", "address", "secret"):
            if name in changes:
                config[name] = changes[name]
        enabled = changes.get("enabled")
        channel_writes.update(
            conn,
            row.id,
            channel_writes.ChannelChanges(
                config=config, enabled=UNSET if enabled is None else enabled
            ),
            actor=ctx.who.actor,
        )
        row = team_row(ctx, conn, channels, "channel")
        return _channel_out(ctx, row, changes.get("url"))


def delete_channel(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = team_row(ctx, conn, channels, "channel")
        channel_writes.delete(conn, row.id, actor=ctx.who.actor)


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
