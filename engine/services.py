"""Services and service groups: every write of them, for the admin API and `beacon apply`.

A group is a name the services of one team share (`services.group_name`); each page that
shows one of them lists it under that name (`crud.sync_page_layout`). So a change of a
service's group re-lays out every page that shows it, whoever makes it. A service's
`position` orders it in its team's listings only: a page's order is the page's own list,
so a change of position re-lays out nothing (the admin API used to, to no effect). Any
change to a service marks the pages showing it dirty, as they show its name and
description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import crud
from .changes import UNSET, Unset, given
from .errors import ConflictError, NotFoundError, ValidationError
from .tables import page_services, services, teams, utcnow


@dataclass(frozen=True)
class ServiceFields:
    """A new service of a team."""

    key: str
    name: str
    description: str = ""
    group: str | None = None
    position: int = 0


@dataclass(frozen=True)
class ServiceChanges:
    """A change to a service; `group=None` takes it out of its group."""

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    group: str | None | Unset = UNSET
    position: int | Unset = UNSET


def create(conn: Connection, team_id: int, fields: ServiceFields, *, actor: str) -> int:
    """Create a service in team `team_id`; returns its id. No page shows it yet."""
    crud.key_free(conn, services, team_id, fields.key, "service")
    service_id = crud.insert(
        conn,
        services,
        {
            "team_id": team_id,
            "key": fields.key,
            "name": fields.name,
            "description": fields.description,
            "group_name": fields.group,
            "position": fields.position,
        },
    )
    crud.created(conn, services, service_id, actor, "service", fields.key, team_id=team_id)
    return service_id


def update(conn: Connection, service_id: int, changes: ServiceChanges, *, actor: str) -> None:
    """Change a service (nothing given: nothing happens); see the module docstring for what
    follows a change of group."""
    row = crud.row(conn, services, service_id, "service")
    values = given(changes)
    if not values:
        return
    if "group" in values:
        values["group_name"] = values.pop("group")
    crud.update(conn, services, service_id, values)
    if "group_name" in values and values["group_name"] != row.group_name:
        crud.relayout_pages_of(conn, [service_id])
    crud.pages_dirty(conn, service_ids=[service_id])
    crud.audit(
        conn,
        actor,
        "update",
        "service",
        row.key,
        team_id=row.team_id,
        detail={"fields": sorted(given(changes))},
    )


def delete(conn: Connection, service_id: int, *, actor: str) -> None:
    """Delete a service: it leaves every page (a group left empty goes too), and its
    incidents, windows and claims no longer name it."""
    row = crud.row(conn, services, service_id, "service")
    page_ids = _pages_showing(conn, [service_id])
    conn.execute(services.delete().where(services.c.id == service_id))
    for page_id in page_ids:
        crud.sync_page_layout(conn, page_id, crud.page_service_ids(conn, page_id))
    crud.pages_dirty(conn, page_ids=page_ids)
    crud.audit(conn, actor, "delete", "service", row.key, team_id=row.team_id)


# --- groups ---------------------------------------------------------------------------------


def group_members(conn: Connection, team_id: int, name: str) -> list[int]:
    """The ids of the team's services in group `name`, in their order (empty: no group)."""
    return list(
        conn.execute(
            sa.select(services.c.id)
            .where(services.c.team_id == team_id, services.c.group_name == name)
            .order_by(services.c.position, services.c.id)
        ).scalars()
    )


def create_group(
    conn: Connection, team_id: int, name: str, service_ids: Sequence[int], *, actor: str
) -> None:
    """Put services of the team into a new group `name`."""
    _name_free(conn, team_id, name)
    _in_team(conn, team_id, service_ids)
    _regroup(conn, name, service_ids)
    crud.audit(conn, actor, "create", "group", name, team_id=team_id)


def update_group(
    conn: Connection,
    team_id: int,
    name: str,
    *,
    new_name: str | Unset = UNSET,
    service_ids: Sequence[int] | Unset = UNSET,
    actor: str,
) -> None:
    """Rename a group and/or change its services (those left out leave the group)."""
    current = _members(conn, team_id, name)
    members = current if isinstance(service_ids, Unset) else list(service_ids)
    _in_team(conn, team_id, members)
    renamed = name if isinstance(new_name, Unset) else new_name
    if renamed != name:
        _name_free(conn, team_id, renamed)
    if left := [sid for sid in current if sid not in members]:
        _regroup(conn, None, left)
    _regroup(conn, renamed, members)
    crud.audit(conn, actor, "update", "group", name, team_id=team_id, detail={"name": renamed})


def delete_group(conn: Connection, team_id: int, name: str, *, actor: str) -> None:
    """Take every service out of group `name` (the services stay)."""
    _regroup(conn, None, _members(conn, team_id, name))
    crud.audit(conn, actor, "delete", "group", name, team_id=team_id)


def _members(conn: Connection, team_id: int, name: str) -> list[int]:
    found = group_members(conn, team_id, name)
    if not found:
        team_key = conn.execute(sa.select(teams.c.key).where(teams.c.id == team_id)).scalar()
        raise NotFoundError(f"no group {name!r} in team {team_key!r}")
    return found


def _name_free(conn: Connection, team_id: int, name: str) -> None:
    if group_members(conn, team_id, name):
        raise ConflictError(f"a group named {name!r} exists in this team")


def _in_team(conn: Connection, team_id: int, service_ids: Sequence[int]) -> None:
    found = set(
        conn.execute(
            sa.select(services.c.id).where(
                services.c.id.in_(list(service_ids)), services.c.team_id == team_id
            )
        ).scalars()
    )
    if missing := [i for i in service_ids if i not in found]:
        raise ValidationError(f"no service {missing[0]} in this team", field="services")


def _regroup(conn: Connection, name: str | None, service_ids: Sequence[int]) -> None:
    conn.execute(
        services.update()
        .where(services.c.id.in_(list(service_ids)))
        .values(group_name=name, updated_at=utcnow())
    )
    crud.relayout_pages_of(conn, service_ids)
    crud.pages_dirty(conn, service_ids=service_ids)


def _pages_showing(conn: Connection, service_ids: Sequence[int]) -> list[int]:
    shown = sa.select(page_services.c.page_id).where(
        page_services.c.service_id.in_(list(service_ids))
    )
    return sorted(set(conn.execute(shown).scalars()))
