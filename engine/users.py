"""Users and their team memberships: every write of a user (admin API, `beacon user create`).

Emails are stored lower-case and are unique; only a password's hash is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import crud, feed_tokens, sessions
from .changes import UNSET, Unset, given
from .errors import ConflictError, ValidationError
from .models import Role
from .security import hash_password
from .tables import team_members, teams, users


@dataclass(frozen=True)
class UserFields:
    """A new user; `team_ids` are the teams it is a member of."""

    email: str
    role: Role
    name: str = ""
    password: str | None = None
    team_ids: Sequence[int] = ()


@dataclass(frozen=True)
class UserChanges:
    """A change to a user; `team_ids` replaces every membership."""

    name: str | Unset = UNSET
    role: Role | Unset = UNSET
    active: bool | Unset = UNSET
    password: str | Unset = UNSET
    team_ids: Sequence[int] | Unset = UNSET


def normalise_email(email: str) -> str:
    """The stored form of an email (trimmed, lower-case), or `ValidationError`."""
    email = email.strip().lower()
    if "@" not in email:
        raise ValidationError(f"{email!r} is not an email address", field="email")
    return email


def create(conn: Connection, fields: UserFields, *, actor: str) -> int:
    """Create a user; returns its id."""
    email = normalise_email(fields.email)
    role = role_of(fields.role)
    if conn.execute(sa.select(users.c.id).where(users.c.email == email)).first():
        raise ConflictError(f"a user with email {email!r} exists")
    user_id = crud.insert(
        conn,
        users,
        {
            "email": email,
            "name": fields.name,
            "role": role,
            "password_hash": hash_password(fields.password) if fields.password else None,
        },
    )
    _set_teams(conn, user_id, fields.team_ids)
    crud.audit(conn, actor, "create", "user", email)
    return user_id


def update(conn: Connection, user_id: int, changes: UserChanges, *, actor: str) -> None:
    """Change a user's name, role, state, password or teams (nothing given: nothing
    happens)."""
    row = crud.row(conn, users, user_id, "user")
    asked = given(changes)
    if not asked:
        return
    values: dict[str, Any] = {k: asked[k] for k in ("name", "active") if k in asked}
    if "role" in asked:
        values["role"] = role_of(asked["role"])
    if "password" in asked:
        values["password_hash"] = hash_password(asked["password"])
    if values:
        crud.update(conn, users, user_id, values)
    if "team_ids" in asked:
        _set_teams(conn, user_id, asked["team_ids"])
    if "password" in asked or asked.get("active") is False:
        # A new password or a deactivation signs the user out everywhere.
        sessions.end_all(conn, user_id)
    if asked.get("active") is False:
        feed_tokens.revoke_all(conn, user_id)  # and their feed links stop working
    shown = sorted("teams" if k == "team_ids" else k for k in asked)
    crud.audit(conn, actor, "update", "user", row.email, detail={"fields": shown})


def delete(conn: Connection, user_id: int, *, actor: str) -> None:
    """Delete a user (its memberships and subscriptions go with it)."""
    row = crud.row(conn, users, user_id, "user")
    conn.execute(users.delete().where(users.c.id == user_id))
    crud.audit(conn, actor, "delete", "user", row.email)


def role_of(role: Role | str) -> Role:
    """`role` as a `Role`, or `ValidationError`."""
    try:
        return Role(role)
    except ValueError:
        raise ValidationError(f"unknown role {role!r}", field="role") from None


def _set_teams(conn: Connection, user_id: int, team_ids: Sequence[int]) -> None:
    crud.check_ids(conn, teams, team_ids, "team", "teams")
    crud.replace_links(conn, team_members.c.user_id, user_id, team_members.c.team_id, team_ids)
