"""Users, team membership and API keys, by team key: what `beacon user create` and `beacon
apikey create` need, on top of `engine.users` and `engine.api_keys` (which every writer of
users and keys goes through); passwords, and the emailed links that set them.

A password change, a reset and a deactivation end every session of the user (engine.users
keeps that invariant). Invitation and reset links carry a random token of which only the
SHA-256 is kept; `use_token` spends one at most once, before it expires.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import api_keys, tables, users
from .changes import UNSET
from .db import Store
from .errors import NotFoundError, ValidationError
from .models import Role
from .security import token_digest
from .tables import teams, utcnow

#: A password shorter than this is refused (NIST SP 800-63B's minimum for chosen ones).
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
INVITE = "invite"
RESET = "reset"
#: How long an emailed link works.
TOKEN_LIFETIMES = {INVITE: timedelta(days=7), RESET: timedelta(hours=1)}


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
    if password is not None:
        check_new_password(password)
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


def check_new_password(password: str) -> None:
    """Refuse a password too short (or absurdly long) to keep, saying which."""
    if len(password) < MIN_PASSWORD:
        raise ValidationError(
            f"the password must be at least {MIN_PASSWORD} characters", field="password"
        )
    if len(password) > MAX_PASSWORD:
        raise ValidationError(
            f"the password must be at most {MAX_PASSWORD} characters", field="password"
        )


def set_password(conn: Connection, user_id: int, password: str, *, actor: str = "cli") -> None:
    """Set `user_id`'s password; every session of the user ends (engine.users.update)."""
    check_new_password(password)
    users.update(conn, user_id, users.UserChanges(password=password), actor=actor)


def store_password_hash(conn: Connection, user_id: int, new_hash: str, old_hash: str) -> None:
    """Replace an old-style hash of the same password (at sign-in): not a password change,
    so sessions stay; only if the hash is still `old_hash` (a concurrent change wins)."""
    conn.execute(
        tables.users.update()
        .where(tables.users.c.id == user_id, tables.users.c.password_hash == old_hash)
        .values(password_hash=new_hash)
    )


def set_active(conn: Connection, user_id: int, active: bool, *, actor: str = "cli") -> None:
    """Activate or deactivate `user_id`; deactivating ends every session of the user."""
    users.update(conn, user_id, users.UserChanges(active=active), actor=actor)


_token_hash = token_digest


def issue_token(conn: Connection, user_id: int, kind: str, *, now: datetime | None = None) -> str:
    """A new single-use `kind` link token for `user_id` (earlier unused ones of the same
    kind stop working: only the newest email counts)."""
    now = now or utcnow()
    conn.execute(
        tables.account_tokens.delete().where(
            tables.account_tokens.c.user_id == user_id, tables.account_tokens.c.kind == kind
        )
    )
    token = secrets.token_urlsafe(32)
    conn.execute(
        tables.account_tokens.insert().values(
            token_hash=_token_hash(token),
            kind=kind,
            user_id=user_id,
            created_at=now,
            expires_at=now + TOKEN_LIFETIMES[kind],
        )
    )
    return token


@dataclass(frozen=True)
class TokenUser:
    """Whom a link token acts for."""

    user_id: int
    email: str


def peek_token(
    conn: Connection, token: str, kind: str, *, now: datetime | None = None
) -> TokenUser | None:
    """The user a still-usable `kind` token acts for (without spending it), or None."""
    now = now or utcnow()
    row = conn.execute(
        sa.select(tables.users.c.id, tables.users.c.email)
        .join(tables.account_tokens, tables.account_tokens.c.user_id == tables.users.c.id)
        .where(
            tables.account_tokens.c.token_hash == _token_hash(token),
            tables.account_tokens.c.kind == kind,
            tables.account_tokens.c.used_at.is_(None),
            tables.account_tokens.c.expires_at > now,
            tables.users.c.active.is_(True),
        )
    ).first()
    return TokenUser(int(row.id), str(row.email)) if row is not None else None


def use_token(
    conn: Connection, token: str, kind: str, password: str, *, now: datetime | None = None
) -> TokenUser | None:
    """Spend a `kind` token to set its user's password; None when it is unknown, used,
    expired or its user inactive. The spend is one conditional update, so two requests
    with the same token cannot both succeed."""
    now = now or utcnow()
    check_new_password(password)
    found = peek_token(conn, token, kind, now=now)
    if found is None:
        return None
    spent = conn.execute(
        tables.account_tokens.update()
        .where(
            tables.account_tokens.c.token_hash == _token_hash(token),
            tables.account_tokens.c.used_at.is_(None),
        )
        .values(used_at=now)
    ).rowcount
    if spent != 1:
        return None
    set_password(conn, found.user_id, password)
    return found


def revoke_api_key(store: Store, ref: str, *, actor: str = "cli") -> str:
    """Revoke the API key whose id or listing prefix is `ref`; returns "name (prefix...)".
    Revoking a revoked key again is harmless."""
    ref = ref.strip().removesuffix("...")
    keys = tables.api_keys
    with store.begin() as conn:
        match = keys.c.id == int(ref) if ref.isdigit() else keys.c.prefix == ref
        rows = conn.execute(sa.select(keys).where(match)).all()
        if not rows:
            raise NotFoundError(f"no API key {ref!r} (see beacon apikey list)")
        if len(rows) > 1:
            raise ValidationError(f"{ref!r} names {len(rows)} keys: give the key's id")
        (row,) = rows
        api_keys.revoke(conn, row.id, actor=actor)
    return f"{row.name} ({row.prefix}...)"


#: Roles from the least to the most privileged: of several in a claim, the last one wins.
_ROLE_ORDER = (Role.STAKEHOLDER, Role.RESPONDER, Role.ADMIN)


def sso_user(
    store: Store,
    email: str,
    *,
    roles: Sequence[str] | None,
    teams: Sequence[str] | None,
    default_role: str,
) -> int | None:
    """The user a single sign-on with a verified `email` signs in as, made on first sign-in;
    None for a deactivated user. `roles` and `teams` are the provider's claims (None when
    the token has no such claim, which leaves the user's as they are): the role is the most
    privileged known role named, the teams are the named teams that exist (others are
    ignored: the provider may know groups that are not Beacon teams)."""
    email = users.normalise_email(email)
    role = None
    if roles is not None:
        named = [r for r in _ROLE_ORDER if r.value in roles]
        role = named[-1] if named else Role(default_role)
    actor = "single sign-on"
    with store.begin() as conn:
        team_ids = None
        if teams is not None:
            team_ids = sorted(
                set(
                    conn.execute(
                        sa.select(tables.teams.c.id).where(tables.teams.c.key.in_(list(teams)))
                    ).scalars()
                )
            )
        row = conn.execute(
            sa.select(tables.users.c.id, tables.users.c.active).where(tables.users.c.email == email)
        ).first()
        if row is None:
            fields = users.UserFields(email, role or Role(default_role), team_ids=team_ids or ())
            return users.create(conn, fields, actor=actor)
        if not row.active:
            return None
        changes = users.UserChanges(
            role=role if role is not None else UNSET,
            team_ids=team_ids if team_ids is not None else UNSET,
        )
        users.update(conn, int(row.id), changes, actor=actor)
        return int(row.id)
