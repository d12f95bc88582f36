"""Who is calling: API keys (`Authorization: Bearer <key>`) and, later, user sessions.

`principal(request)` answers once per request and caches the answer on `request.state`.
Route code asks `require_principal` (401 without credentials) and then checks team access
through the principal's `team_ids` and `admin` flag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from engine.db import Store
from engine.security import hash_api_key
from engine.tables import api_keys, team_members, utcnow

log = logging.getLogger(__name__)

_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. An admin sees every team; others see `team_ids` only."""

    name: str
    admin: bool = False
    team_ids: frozenset[int] = field(default_factory=frozenset)
    user_id: int | None = None
    api_key_id: int | None = None
    role: str = "responder"

    def can_see_team(self, team_id: int) -> bool:
        return self.admin or team_id in self.team_ids

    @property
    def actor(self) -> str:
        return self.name


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def principal_for_api_key(store: Store, key: str) -> Principal | None:
    """The principal an API key acts as, or None for an unknown or revoked key."""
    with store.read() as conn:
        row = conn.execute(
            sa.select(api_keys).where(api_keys.c.key_hash == hash_api_key(key))
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
        # A hint, written only when the write lock is free at once: this runs on the event
        # loop for async routes, which must not wait behind other writers (a flood of
        # deliveries keeps SQLite's lock busy). The key's next use writes it then.
        try:
            with store.begin(wait=0) as conn:
                conn.execute(
                    api_keys.update().where(api_keys.c.id == row.id).values(last_used_at=now)
                )
        except sa.exc.OperationalError as exc:
            log.debug("last use of API key %s not recorded now: %s", row.id, exc)
    team_ids = frozenset([row.team_id]) if row.team_id is not None else frozenset()
    return Principal(
        name=f"api-key:{row.name}",
        admin=bool(row.admin),
        team_ids=team_ids,
        api_key_id=row.id,
        role="admin" if row.admin else "responder",
    )


def principal_for_user(store: Store, user_id: int) -> Principal | None:
    """The principal a signed-in user acts as (used by the session login)."""
    from engine.tables import users

    with store.read() as conn:
        user = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
        if user is None or not user.active:
            return None
        ids = conn.execute(
            sa.select(team_members.c.team_id).where(team_members.c.user_id == user_id)
        ).scalars()
        team_ids = frozenset(ids)
    return Principal(
        name=f"user:{user.email}",
        admin=user.role == "admin",
        team_ids=team_ids,
        user_id=user.id,
        role=user.role,
    )


def principal(conn: HTTPConnection) -> Principal | None:
    """The caller, or None when anonymous. Invalid credentials count as anonymous here;
    `require_principal` turns that into a 401."""
    if hasattr(conn.state, "principal"):
        return conn.state.principal  # type: ignore[no-any-return,unused-ignore]
    store: Store = conn.app.state.store
    found: Principal | None = None
    token = _bearer(conn)
    if token:
        found = principal_for_api_key(store, token)
    elif "session" in conn.scope and conn.session.get("user_id"):
        found = principal_for_user(store, int(conn.session["user_id"]))
    conn.state.principal = found
    return found


def require_principal(conn: HTTPConnection) -> Principal:
    found = principal(conn)
    if found is None:
        raise HTTPException(401, "missing or invalid API key (Authorization: Bearer <key>)")
    return found


def visible_team_ids(conn: HTTPConnection, who: Principal) -> list[int] | None:
    """The team ids `who` may see, or None for all (an admin)."""
    if who.admin:
        return None
    return sorted(who.team_ids)
