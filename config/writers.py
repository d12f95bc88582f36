"""Writing one planned change of `apply` to the store (create, update in place, delete).

Rows are updated in place, never deleted and recreated, so ids that other objects or the
outside world hold (component ids, integration keys, incident links) stay stable.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import crud, maintenance
from engine.activations_store import forget_source_alerts
from engine.assets import store_asset
from engine.errors import ConfigError, ValidationError
from engine.tables import (
    alert_sources,
    channels,
    incident_templates,
    maintenance_windows,
    page_services,
    page_teams,
    services,
    status_pages,
    team_members,
    teams,
    users,
    utcnow,
)

from . import current
from .desired import KEEP, Desired
from .plan import Change


@dataclass
class Context:
    """What the writers of one apply share: the transaction, both states, the actor, and
    the follow-up work collected on the way."""

    conn: Connection
    want: Desired
    now: current.Current
    actor: str
    generated: dict[tuple[str, str], str] = field(default_factory=dict)
    dirty_pages: set[int] = field(default_factory=set)
    dirty_services: set[int] = field(default_factory=set)
    regrouped: set[int] = field(default_factory=set)

    def team_id(self, key: str) -> int:
        return self.now.team_ids[key]

    def service_id(self, team: str, key: str) -> int:
        return self.now.ids["services"][(team, key)]


def _insert(conn: Connection, table: sa.Table, values: dict[str, Any]) -> int:
    inserted = conn.execute(table.insert().values(**values)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def _update(conn: Connection, table: sa.Table, row_id: int, values: dict[str, Any]) -> None:
    if "updated_at" in table.c:
        values = {**values, "updated_at": utcnow()}
    conn.execute(table.update().where(table.c.id == row_id).values(**values))


def _upsert(ctx: Context, kind: str, table: sa.Table, ident: Any, values: dict[str, Any]) -> int:
    row_id = ctx.now.ids[kind].get(ident)
    if row_id is None:
        row_id = _insert(ctx.conn, table, values)
        ctx.now.ids[kind][ident] = row_id
    else:
        _update(ctx.conn, table, row_id, values)
    return row_id


def _write_team(ctx: Context, ident: str, fields: dict[str, Any], change: Change) -> None:
    values = {"key": ident, "name": fields["name"], "private": fields["private"]}
    row_id = _upsert(ctx, "teams", teams, ident, values)
    ctx.now.team_ids[ident] = row_id
    if "members" in fields:
        ctx.conn.execute(team_members.delete().where(team_members.c.team_id == row_id))
        user_ids = ctx.conn.execute(
            sa.select(users.c.id).where(users.c.email.in_(fields["members"]))
        ).scalars()
        rows = [{"team_id": row_id, "user_id": uid} for uid in user_ids]
        if rows:
            ctx.conn.execute(team_members.insert(), rows)


def _write_service(ctx: Context, ident: Any, fields: dict[str, Any], change: Change) -> None:
    values = {
        "team_id": ctx.team_id(ident[0]),
        "key": ident[1],
        "name": fields["name"],
        "description": fields["description"],
        "group_name": fields["group"],
        "position": fields["position"],
    }
    if values["position"] is KEEP:
        if ident in ctx.now.ids["services"]:
            del values["position"]
        else:
            values["position"] = ctx.want.file_positions[ident]
    row_id = _upsert(ctx, "services", services, ident, values)
    ctx.dirty_services.add(row_id)
    if "group" in change.fields:
        ctx.regrouped.add(row_id)


def _write_channel(ctx: Context, ident: Any, fields: dict[str, Any], change: Change) -> None:
    values = {"team_id": ctx.team_id(ident[0]), "key": ident[1], **fields}
    _upsert(ctx, "channels", channels, ident, values)


def _write_source(ctx: Context, ident: Any, fields: dict[str, Any], change: Change) -> None:
    values = {"team_id": ctx.team_id(ident[0]), "key": ident[1], **fields}
    if values["integration_key"] is KEEP:
        if ident in ctx.now.ids["alert_sources"]:
            del values["integration_key"]
        else:
            new_key = secrets.token_urlsafe(24)
            values["integration_key"] = new_key
            ctx.generated[ident] = new_key
    _upsert(ctx, "alert_sources", alert_sources, ident, values)


def _write_template(ctx: Context, ident: Any, fields: dict[str, Any], change: Change) -> None:
    values = {"team_id": ctx.team_id(ident[0]), "key": ident[1], **fields}
    _upsert(ctx, "incident_templates", incident_templates, ident, values)


def _write_window(ctx: Context, ident: Any, fields: dict[str, Any], change: Change) -> None:
    team, key = ident
    values: dict[str, Any] = {
        "title": fields["title"],
        "message": fields["message"],
        "starts_at": fields["start"],
        "ends_at": fields["end"],
        "service_ids": [ctx.service_id(team, k) for k in fields["services"]],
        "notify": fields["notify"],
        "on_end": fields["on_end"],
    }
    row_id = ctx.now.ids["maintenance_windows"].get(ident)
    try:
        if row_id is None:
            row_id = maintenance.create(ctx.conn, team_id=ctx.team_id(team), key=key, **values)
            ctx.now.ids["maintenance_windows"][ident] = row_id
        else:
            maintenance.update(ctx.conn, row_id, **values)
    except ValidationError as exc:
        raise ConfigError(f"maintenance window {team}/{key}: {exc}") from None
    crud.pages_dirty(ctx.conn, window_ids=[row_id])


def _write_page(ctx: Context, slug: str, fields: dict[str, Any], change: Change) -> None:
    asset_ids = {
        role: store_asset(ctx.conn, ctx.want.assets[fields[role]]) if fields[role] else None
        for role in ("logo", "favicon")
    }
    values: dict[str, Any] = {
        "team_id": ctx.team_id(fields["teams"][0]),
        "slug": slug,
        "name": fields["name"],
        "type": fields["type"],
        "time_zone": fields["time_zone"],
        "custom_domain": fields["custom_domain"],
        "active": fields["active"],
        "hide_uptime": fields["hide_uptime"],
        "notify_component_changes": fields["notify_component_changes"],
        "logo_asset_id": asset_ids["logo"],
        "favicon_asset_id": asset_ids["favicon"],
    }
    page_id = ctx.now.ids["status_pages"].get(slug)
    if fields["active"]:
        activated = None
        if page_id is not None:
            activated = ctx.conn.execute(
                sa.select(status_pages.c.activated_at).where(status_pages.c.id == page_id)
            ).scalar()
        if activated is None:
            values["activated_at"] = utcnow()
    page_id = _upsert(ctx, "status_pages", status_pages, slug, values)
    ctx.conn.execute(page_teams.delete().where(page_teams.c.page_id == page_id))
    ctx.conn.execute(
        page_teams.insert(),
        [
            {"page_id": page_id, "team_id": ctx.team_id(t), "position": i}
            for i, t in enumerate(fields["teams"])
        ],
    )
    ctx.dirty_pages.add(page_id)


WRITERS = {
    "teams": _write_team,
    "services": _write_service,
    "channels": _write_channel,
    "alert_sources": _write_source,
    "incident_templates": _write_template,
    "maintenance_windows": _write_window,
    "status_pages": _write_page,
}
TABLES = {
    "services": services,
    "channels": channels,
    "alert_sources": alert_sources,
    "incident_templates": incident_templates,
    "maintenance_windows": maintenance_windows,
    "status_pages": status_pages,
}


def delete(ctx: Context, kind: str, ident: Any) -> None:
    row_id = ctx.now.ids[kind].pop(ident)
    conn = ctx.conn
    if kind == "maintenance_windows":
        # Its deadlines go and its services leave maintenance if it was running.
        maintenance.delete(conn, row_id)
        return
    if kind == "alert_sources":
        forget_source_alerts(conn, row_id)
    if kind == "services":
        pages = conn.execute(
            sa.select(page_services.c.page_id).where(page_services.c.service_id == row_id)
        ).scalars()
        ctx.dirty_pages.update(pages)
    if kind == "status_pages":
        ctx.dirty_pages.add(row_id)
    conn.execute(TABLES[kind].delete().where(TABLES[kind].c.id == row_id))
