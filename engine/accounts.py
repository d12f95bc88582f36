"""Users, team membership and API keys."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from .db import Store
from .errors import ConflictError, NotFoundError, ValidationError
from .models import Role
from .security import hash_password, new_api_key
from .tables import api_keys, team_members, teams, users


def _team_ids(conn: sa.Connection, keys: Sequence[str]) -> list[int]:
    ids = []
    for key in keys:
        team_id = conn.execute(sa.select(teams.c.id).where(teams.c.key == key)).scalar()
        if team_id is None:
            raise NotFoundError(f"no team with key {key!r}")
        ids.append(team_id)
    return ids


def create_user(
    store: Store, email: str, *, role: str, teams: Sequence[str] = (), password: str | None = None
) -> int:
    """Create a user with `role` in `teams`; returns the user's id."""
    try:
        role = Role(role)
    except ValueError:
        raise ValidationError(f"unknown role {role!r}", field="role") from None
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationError(f"{email!r} is not an email address", field="email")
    with store.begin() as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.email == email)).first():
            raise ConflictError(f"a user with email {email!r} exists")
        team_ids = _team_ids(conn, teams)
        inserted = conn.execute(
            users.insert().values(
                email=email,
                role=role,
                password_hash=hash_password(password) if password else None,
            )
        ).inserted_primary_key
        assert inserted is not None
        user_id = inserted[0]
        if team_ids:
            conn.execute(
                team_members.insert(), [{"team_id": t, "user_id": user_id} for t in team_ids]
            )
    return int(user_id)


def create_api_key(store: Store, *, name: str, team: str | None = None, admin: bool = False) -> str:
    """Create an API key for `team` (responder rights) or an admin key; returns the key,
    which is shown once: only its hash is kept."""
    if bool(team) == bool(admin):
        raise ValidationError("an API key is either for one team or an admin key")
    key, prefix, digest = new_api_key()
    with store.begin() as conn:
        team_id = _team_ids(conn, [team])[0] if team else None
        conn.execute(
            api_keys.insert().values(
                name=name, team_id=team_id, admin=admin, prefix=prefix, key_hash=digest
            )
        )
    return key
