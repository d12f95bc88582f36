"""Writing one planned change of `apply` to the store: each create, update and delete is a
call of the object's write function in `engine` (the same ones the admin API calls), which
keeps the object's invariants, audits the change and marks the pages it shows on dirty.

Rows are updated in place, never deleted and recreated, so ids that other objects or the
outside world hold (component ids, integration keys, incident links) stay stable. An update
passes only the fields the plan found changed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import channels as channel_writes
from engine import maintenance
from engine import services as service_writes
from engine import sources as source_writes
from engine import statuspages as page_writes
from engine import teams as team_writes
from engine import templates as template_writes
from engine.models import IncidentStatus, PageType, ServiceStatus
from engine.tables import users

from . import current
from .desired import KEEP, Desired
from .plan import Change


@dataclass
class Context:
    """What the writers of one apply share: the transaction, both states, the actor, and
    the integration keys generated on the way (printed with the webhook URLs)."""

    conn: Connection
    want: Desired
    now: current.Current
    actor: str
    generated: dict[tuple[str, str], str] = field(default_factory=dict)

    def team_id(self, key: str) -> int:
        return self.now.team_ids[key]

    def service_id(self, team: str, key: str) -> int:
        return self.now.ids["services"][(team, key)]


def _changed(fields: dict[str, Any], change: Change) -> dict[str, Any]:
    """The fields of an update that the plan found changed, with their new values."""
    return {name: fields[name] for name in change.fields}


def _user_ids(ctx: Context, emails: list[str]) -> list[int]:
    return list(ctx.conn.execute(sa.select(users.c.id).where(users.c.email.in_(emails))).scalars())


def _write_team(ctx: Context, ident: str, fields: dict[str, Any], change: Change) -> None:
    row_id = ctx.now.ids["teams"].get(ident)
    if row_id is None:
        members = _user_ids(ctx, fields.get("members", []))
        made = team_writes.TeamFields(ident, fields["name"], fields["private"], members)
        row_id = team_writes.create(ctx.conn, made, actor=ctx.actor)
        ctx.now.ids["teams"][ident] = ctx.now.team_ids[ident] = row_id
        return
    changed = _changed(fields, change)
    if "members" in changed:
        changed["members"] = _user_ids(ctx, changed["members"])
    team_writes.update(ctx.conn, row_id, team_writes.TeamChanges(**changed), actor=ctx.actor)


@dataclass(frozen=True)
class _Scoped:
    """How `apply` writes a kind whose engine module creates in a team and updates by id
    (`create(conn, team_id, fields, *, actor)`, `update(conn, id, changes, *, actor)`):
    the module, its `...Fields` for a new object and its `...Changes` for changed fields."""

    module: Any
    made: Callable[[Context, Any, dict[str, Any]], Any]
    changes: Callable[[dict[str, Any]], Any]

    def write(
        self, kind: str, ctx: Context, ident: Any, fields: dict[str, Any], change: Change
    ) -> None:
        row_id = ctx.now.ids[kind].get(ident)
        if row_id is None:
            made = self.made(ctx, ident, fields)
            team_id = ctx.team_id(ident[0])
            ctx.now.ids[kind][ident] = self.module.create(ctx.conn, team_id, made, actor=ctx.actor)
            return
        changes = self.changes(_changed(fields, change))
        self.module.update(ctx.conn, row_id, changes, actor=ctx.actor)


def _new_service(ctx: Context, ident: Any, fields: dict[str, Any]) -> Any:
    position = fields["position"]
    return service_writes.ServiceFields(
        key=ident[1],
        name=fields["name"],
        description=fields["description"],
        group=fields["group"],
        position=ctx.want.file_positions[ident] if position is KEEP else position,
    )


def _new_source(ctx: Context, ident: Any, fields: dict[str, Any]) -> Any:
    values = dict(fields)
    if values["integration_key"] is KEEP:
        values["integration_key"] = ctx.generated[ident] = source_writes.new_integration_key()
    return source_writes.SourceFields(key=ident[1], **values)


def _template_values(fields: dict[str, Any]) -> dict[str, Any]:
    """A template's fields as `engine.templates` takes them (its statuses as enums)."""
    values = dict(fields)
    if "status" in values:
        values["status"] = IncidentStatus(values["status"])
    if "services" in values:
        values["services"] = {k: ServiceStatus(v) for k, v in values["services"].items()}
    return values


_SCOPED = {
    # A change of group re-lays out the pages showing the service (engine.services).
    "services": _Scoped(
        service_writes, _new_service, lambda changed: service_writes.ServiceChanges(**changed)
    ),
    "channels": _Scoped(
        channel_writes,
        lambda ctx, ident, fields: channel_writes.ChannelFields(key=ident[1], **fields),
        lambda changed: channel_writes.ChannelChanges(**changed),
    ),
    "alert_sources": _Scoped(
        source_writes, _new_source, lambda changed: source_writes.SourceChanges(**changed)
    ),
    "incident_templates": _Scoped(
        template_writes,
        lambda ctx, ident, fields: template_writes.TemplateFields(
            key=ident[1], **_template_values(fields)
        ),
        lambda changed: template_writes.TemplateChanges(**_template_values(changed)),
    ),
}


#: A window's fields in the file, by the name `engine.maintenance` gives them.
_WINDOW_ARGS = {"start": "starts_at", "end": "ends_at", "services": "service_ids"}


def _write_window(ctx: Context, ident: Any, fields: dict[str, Any], change: Change) -> None:
    team, key = ident
    values = {_WINDOW_ARGS.get(name, name): value for name, value in fields.items()}
    values["service_ids"] = [ctx.service_id(team, k) for k in fields["services"]]
    row_id = ctx.now.ids["maintenance_windows"].get(ident)
    if row_id is None:
        row_id = maintenance.create(
            ctx.conn, team_id=ctx.team_id(team), key=key, **values, actor=ctx.actor
        )
        ctx.now.ids["maintenance_windows"][ident] = row_id
        return
    changed = {_WINDOW_ARGS.get(name, name) for name in change.fields}
    asked = {name: value for name, value in values.items() if name in changed}
    maintenance.update(ctx.conn, row_id, **asked, actor=ctx.actor)


def _write_page(ctx: Context, slug: str, fields: dict[str, Any], change: Change) -> None:
    values = dict(fields)
    values["team_ids"] = [ctx.team_id(t) for t in values.pop("teams")]
    values["service_ids"] = [ctx.service_id(*ref) for ref in values.pop("services")]
    for role in page_writes.IMAGES:
        values[role] = ctx.want.assets[values[role]] if values[role] else None
    values["type"] = PageType(values["type"])
    page_id = ctx.now.ids["status_pages"].get(slug)
    if page_id is None:
        made = page_writes.PageFields(slug=slug, **values)
        ctx.now.ids["status_pages"][slug] = page_writes.create(ctx.conn, made, actor=ctx.actor)
        return
    named = {"teams": "team_ids", "services": "service_ids"}
    changed = {named.get(name, name): values[named.get(name, name)] for name in change.fields}
    page_writes.update(ctx.conn, page_id, page_writes.PageChanges(**changed), actor=ctx.actor)


Writer = Callable[[Context, Any, dict[str, Any], Change], None]

WRITERS: dict[str, Writer] = {
    "teams": _write_team,
    **{kind: functools.partial(scoped.write, kind) for kind, scoped in _SCOPED.items()},
    "maintenance_windows": _write_window,
    "status_pages": _write_page,
}
#: The engine module whose `delete` deletes an object of each kind.
DELETERS = {
    "services": service_writes,
    "channels": channel_writes,
    # Its alerts leave their activations first (engine.sources.delete).
    "alert_sources": source_writes,
    "incident_templates": template_writes,
    "status_pages": page_writes,
    # Its deadlines go and its services leave maintenance if it was running.
    "maintenance_windows": maintenance,
}


def delete(ctx: Context, kind: str, ident: Any) -> None:
    row_id = ctx.now.ids[kind].pop(ident)
    DELETERS[kind].delete(ctx.conn, row_id, actor=ctx.actor)
