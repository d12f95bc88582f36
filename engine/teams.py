"""Teams: every write of a team, for the admin API and `beacon apply` alike.

A team owns its objects (services, sources, pages, ...): deleting it deletes them through
the store's cascades, so the pages it owned are marked dirty first (a render of a deleted
page drops it from the cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import crud
from .changes import UNSET, Unset, given
from .errors import ConflictError
from .tables import status_pages, team_members, teams, users


@dataclass(frozen=True)
class TeamFields:
    """A new team. `members` are user ids."""

    key: str
    name: str = ""
    private: bool = False
    members: Sequence[int] = ()


@dataclass(frozen=True)
class TeamChanges:
    """A change to a team; `members` replaces the whole membership."""

    name: str | Unset = UNSET
    private: bool | Unset = UNSET
    members: Sequence[int] | Unset = UNSET


def create(conn: Connection, fields: TeamFields, *, actor: str) -> int:
    """Create a team; returns its id. Team keys are unique in the installation."""
    if conn.execute(sa.select(teams.c.id).where(teams.c.key == fields.key)).first():
        raise ConflictError(f"a team with key {fields.key!r} exists")
    team_id = crud.insert(
        conn, teams, {"key": fields.key, "name": fields.name, "private": fields.private}
    )
    _set_members(conn, team_id, fields.members)
    crud.created(conn, teams, team_id, actor, "team", fields.key, team_id=team_id)
    return team_id


def update(conn: Connection, team_id: int, changes: TeamChanges, *, actor: str) -> None:
    """Change a team's name, privacy or members (nothing given: nothing happens)."""
    row = crud.row(conn, teams, team_id, "team")
    values = given(changes)
    if not values:
        return
    members = values.pop("members", None)
    if values:
        crud.update(conn, teams, team_id, values)
    if members is not None:
        _set_members(conn, team_id, members)
    crud.audit(
        conn,
        actor,
        "update",
        "team",
        row.key,
        team_id=team_id,
        detail={"fields": sorted(given(changes))},
    )


def delete(conn: Connection, team_id: int, *, actor: str) -> None:
    """Delete a team and, through the store's cascades, everything it owns."""
    row = crud.row(conn, teams, team_id, "team")
    owned = conn.execute(sa.select(status_pages.c.id).where(status_pages.c.team_id == team_id))
    crud.pages_dirty(conn, page_ids=owned.scalars())
    conn.execute(teams.delete().where(teams.c.id == team_id))
    # Not the team's own audit row: that would go with the team.
    crud.audit(conn, actor, "delete", "team", row.key)


def _set_members(conn: Connection, team_id: int, user_ids: Sequence[int]) -> None:
    crud.check_ids(conn, users, user_ids, "user", "members")
    crud.replace_links(conn, team_members.c.team_id, team_id, team_members.c.user_id, user_ids)
