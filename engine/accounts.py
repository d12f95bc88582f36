"""Users, team membership and API keys, by team key: what `beacon user create` and `beacon
apikey create` need, on top of `engine.users` and `engine.api_keys` (which every writer of
users and keys goes through)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from . import api_keys, users
from .db import Store
from .errors import NotFoundError
from .tables import teams


def _team_ids(conn: sa.Connection, keys: Sequence[str]) -> list[int]:
    ids = []
    for key in keys:
        team_id = conn.execute(sa.select(teams.c.id).where(teams.c.key == key)).scalar()
        if team_id is None:
            raise NotFoundError(f"no team with key {key!r}")
        ids.append(team_id)
    return ids


def create_user(
    store: Store,
    email: str,
    *,
    role: str,
    teams: Sequence[str] = (),
    password: str | None = None,
    actor: str = "cli",
) -> int:
    """Create a user with `role` in `teams`; returns the user's id."""
    with store.begin() as conn:
        fields = users.UserFields(
            email, users.role_of(role), password=password, team_ids=_team_ids(conn, teams)
        )
        return users.create(conn, fields, actor=actor)


def create_api_key(
    store: Store, *, name: str, team: str | None = None, admin: bool = False, actor: str = "cli"
) -> str:
    """Create an API key for `team` (responder rights) or an admin key; returns the key,
    which is shown once: only its hash is kept."""
    with store.begin() as conn:
        team_id = _team_ids(conn, [team])[0] if team else None
        return api_keys.create(conn, name=name, team_id=team_id, admin=admin, actor=actor).key
