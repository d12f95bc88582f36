"""What the store holds, in the same shape as `config.desired` builds from a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import channels as channel_writes
from engine import sources as source_writes
from engine.tables import (
    alert_sources,
    assets,
    channels,
    incident_templates,
    maintenance_services,
    maintenance_windows,
    page_services,
    page_teams,
    services,
    status_pages,
    team_members,
    teams,
    users,
)


@dataclass
class Current:
    objects: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)
    ids: dict[str, dict[Any, int]] = field(default_factory=dict)
    team_ids: dict[str, int] = field(default_factory=dict)


def read(conn: Connection) -> Current:
    """Every object `apply` manages, keyed like the desired state."""
    now = Current()
    team_key: dict[int, str] = {}
    now.objects["teams"], now.ids["teams"] = {}, {}
    emails: dict[int, list[str]] = {}
    for team_id, email in conn.execute(
        sa.select(team_members.c.team_id, users.c.email).join(
            users, users.c.id == team_members.c.user_id
        )
    ):
        emails.setdefault(team_id, []).append(email)
    for row in conn.execute(sa.select(teams)):
        team_key[row.id] = row.key
        now.team_ids[row.key] = row.id
        now.ids["teams"][row.key] = row.id
        now.objects["teams"][row.key] = {
            "name": row.name,
            "private": bool(row.private),
            "members": sorted(emails.get(row.id, [])),
        }

    service_ident: dict[int, tuple[str, str]] = {}
    _scoped(now, "services")
    for row in conn.execute(sa.select(services)):
        ident = (team_key[row.team_id], row.key)
        service_ident[row.id] = ident
        now.ids["services"][ident] = row.id
        now.objects["services"][ident] = {
            "name": row.name,
            "description": row.description,
            "group": row.group_name,
            "position": row.position,
        }

    _scoped(now, "channels")
    for row in conn.execute(sa.select(channels)):
        ident = (team_key[row.team_id], row.key)
        now.ids["channels"][ident] = row.id
        now.objects["channels"][ident] = {
            "type": row.type,
            "config": channel_writes.config_of(conn, row.config),
            "enabled": bool(row.enabled),
        }

    _scoped(now, "alert_sources")
    for row in conn.execute(sa.select(alert_sources)):
        ident = (team_key[row.team_id], row.key)
        now.ids["alert_sources"][ident] = row.id
        now.objects["alert_sources"][ident] = {
            "name": row.name,
            "type": row.type,
            # A digest, never equal to a key: `config.desired` says KEEP for a file's key
            # that is the source's current one.
            "integration_key": row.key_digest,
            "signing_secret": source_writes.signing_secret(conn, row.signing_secret),
            "settings": dict(row.settings or {}),
            "rate_limit": row.rate_limit,
            "enabled": bool(row.enabled),
        }

    _scoped(now, "incident_templates")
    for row in conn.execute(sa.select(incident_templates)):
        ident = (team_key[row.team_id], row.key)
        now.ids["incident_templates"][ident] = row.id
        now.objects["incident_templates"][ident] = {
            "title": row.title,
            "message": row.message,
            "resolve_message": row.resolve_message,
            "status": row.status,
            "services": dict(row.services or {}),
        }

    _scoped(now, "maintenance_windows")
    window_services: dict[int, list[str]] = {}
    for window_id, service_id in conn.execute(
        sa.select(maintenance_services.c.window_id, maintenance_services.c.service_id)
    ):
        window_services.setdefault(window_id, []).append(service_ident[service_id][1])
    # Windows made over the API have no key: the config file does not manage them.
    for row in conn.execute(
        sa.select(maintenance_windows).where(maintenance_windows.c.key.isnot(None))
    ):
        ident = (team_key[row.team_id], row.key)
        now.ids["maintenance_windows"][ident] = row.id
        now.objects["maintenance_windows"][ident] = {
            "title": row.title,
            "message": row.message,
            "start": row.starts_at,
            "end": row.ends_at,
            "notify": bool(row.notify),
            "on_end": row.on_end,
            "services": sorted(set(window_services.get(row.id, []))),
        }

    _scoped(now, "status_pages")
    sha = dict(conn.execute(sa.select(assets.c.id, assets.c.sha256)).all())
    members: dict[int, list[str]] = {}
    for row in conn.execute(sa.select(page_teams).order_by(page_teams.c.position)):
        members.setdefault(row.page_id, []).append(team_key[row.team_id])
    shown: dict[int, list[tuple[str, str]]] = {}
    for row in conn.execute(
        sa.select(page_services).order_by(page_services.c.position, page_services.c.id)
    ):
        shown.setdefault(row.page_id, []).append(service_ident[row.service_id])
    for row in conn.execute(sa.select(status_pages)):
        now.ids["status_pages"][row.slug] = row.id
        now.objects["status_pages"][row.slug] = {
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
        }
    return now


def _scoped(now: Current, kind: str) -> None:
    now.objects[kind], now.ids[kind] = {}, {}
