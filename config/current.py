"""What the store holds, in the same shape as `config.desired` builds from a file.

One reader per kind turns a row into the file's fields; they share the loop that keys each
object as the file does (`(team key, key)`, a team or a page by its own key) and keeps its
row id and its origin (`engine.origins`: which file declared it and what that file set).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import channels as channel_writes
from engine import sources as source_writes
from engine.origins import TABLES
from engine.tables import (
    assets,
    maintenance_services,
    page_services,
    page_teams,
    team_members,
    users,
)


@dataclass(frozen=True)
class Origin:
    """Who declared an object (`engine.origins`) and, for a config file, what it set."""

    origin: str | None
    applied: dict[str, Any] | None


@dataclass
class Current:
    objects: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)
    ids: dict[str, dict[Any, int]] = field(default_factory=dict)
    team_ids: dict[str, int] = field(default_factory=dict)
    origins: dict[str, dict[Any, Origin]] = field(default_factory=dict)


#: A kind's reader: the row's identity and its fields in the file's shape.
Reader = Callable[[Any], tuple[Any, dict[str, Any]]]


def read(conn: Connection) -> Current:
    """Every object `apply` manages, keyed like the desired state."""
    now = Current()
    team_key = {row.id: row.key for row in conn.execute(sa.select(TABLES["teams"]))}
    now.team_ids = {key: team_id for team_id, key in team_key.items()}
    service_table = TABLES["services"]
    service_ident = {
        row.id: (team_key[row.team_id], row.key)
        for row in conn.execute(
            sa.select(service_table.c.id, service_table.c.team_id, service_table.c.key)
        )
    }

    def scoped(row: Any) -> tuple[str, str]:
        return (team_key[row.team_id], row.key)

    readers: dict[str, Reader] = {
        "teams": _teams(conn),
        "services": lambda row: (
            scoped(row),
            {
                "name": row.name,
                "description": row.description,
                "group": row.group_name,
                "position": row.position,
            },
        ),
        "channels": lambda row: (
            scoped(row),
            {
                "type": row.type,
                "config": channel_writes.config_of(conn, row.config),
                "enabled": bool(row.enabled),
            },
        ),
        "alert_sources": lambda row: (
            scoped(row),
            {
                "name": row.name,
                "type": row.type,
                # A digest, never equal to a key: `config.desired` says KEEP for a file's key
                # that is the source's current one.
                "integration_key": row.key_digest,
                "signing_secret": source_writes.signing_secret(conn, row.signing_secret),
                "settings": dict(row.settings or {}),
                "rate_limit": row.rate_limit,
                "enabled": bool(row.enabled),
            },
        ),
        "incident_templates": lambda row: (
            scoped(row),
            {
                "title": row.title,
                "message": row.message,
                "resolve_message": row.resolve_message,
                "status": row.status,
                "services": dict(row.services or {}),
            },
        ),
        "maintenance_windows": _windows(conn, scoped, service_ident),
        "status_pages": _pages(conn, team_key, service_ident),
    }
    for kind, reader in readers.items():
        table = TABLES[kind]
        query = sa.select(table)
        if kind == "maintenance_windows":
            # Every window has a key (migration 0020); one without (a test's own row) is not
            # a config file's to name.
            query = query.where(table.c.key.isnot(None))
        objects: dict[Any, dict[str, Any]] = {}
        ids: dict[Any, int] = {}
        origins: dict[Any, Origin] = {}
        now.objects[kind], now.ids[kind], now.origins[kind] = objects, ids, origins
        for row in conn.execute(query):
            ident, fields = reader(row)
            objects[ident], ids[ident] = fields, row.id
            origins[ident] = Origin(row.origin, row.applied)
    return now


def _teams(conn: Connection) -> Reader:
    emails: dict[int, list[str]] = {}
    for team_id, email in conn.execute(
        sa.select(team_members.c.team_id, users.c.email).join(
            users, users.c.id == team_members.c.user_id
        )
    ):
        emails.setdefault(team_id, []).append(email)
    return lambda row: (
        row.key,
        {"name": row.name, "private": bool(row.private), "members": sorted(emails.get(row.id, []))},
    )


def _windows(
    conn: Connection, scoped: Callable[[Any], tuple[str, str]], service_ident: dict[int, Any]
) -> Reader:
    shown = _grouped(
        conn.execute(
            sa.select(maintenance_services.c.window_id, maintenance_services.c.service_id)
        ),
        lambda service_id: service_ident[service_id][1],
    )
    return lambda row: (
        scoped(row),
        {
            "title": row.title,
            "message": row.message,
            "start": row.starts_at,
            "end": row.ends_at,
            "notify": bool(row.notify),
            "on_end": row.on_end,
            "services": sorted(set(shown.get(row.id, []))),
        },
    )


def _pages(conn: Connection, team_key: dict[int, str], service_ident: dict[int, Any]) -> Reader:
    sha = dict(conn.execute(sa.select(assets.c.id, assets.c.sha256)).all())
    members = _grouped(
        conn.execute(
            sa.select(page_teams.c.page_id, page_teams.c.team_id).order_by(page_teams.c.position)
        ),
        team_key.__getitem__,
    )
    shown = _grouped(
        conn.execute(
            sa.select(page_services.c.page_id, page_services.c.service_id).order_by(
                page_services.c.position, page_services.c.id
            )
        ),
        service_ident.__getitem__,
    )
    return lambda row: (
        row.slug,
        {
            "name": row.name,
            "type": row.type,
            "teams": members.get(row.id, []) or [team_key[row.team_id]],
            "services": shown.get(row.id, []),
            "time_zone": row.time_zone,
            "custom_domain": row.custom_domain,
            "active": bool(row.active),
            "hide_uptime": bool(row.hide_uptime),
            "notify_component_changes": bool(row.notify_component_changes),
            "logo": sha.get(row.logo_asset_id),
            "favicon": sha.get(row.favicon_asset_id),
        },
    )


def _grouped(pairs: Iterable[Any], value: Callable[[Any], Any]) -> dict[int, list[Any]]:
    """(owner id, other id) pairs as each owner's list of `value(other id)`, in order."""
    found: dict[int, list[Any]] = {}
    for owner, other in pairs:
        found.setdefault(owner, []).append(value(other))
    return found
