"""Who is calling: API keys (`Authorization: Bearer <key>`) and signed-in users (the
session cookie names a server-side session: `pages.sessions`, `engine.sessions`).

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

from engine import api_keys as key_writes
from engine import sessions
from engine.db import Store
from engine.security import hash_api_key
from engine.tables import api_keys, team_members, utcnow

from .sessions import REFUSED

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
                key_writes.note_use(conn, row.id, now)
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
    elif _session_token(conn):
        found = _session_principal(conn, _session_token(conn))
    conn.state.principal = found
    return found


def _session_token(conn: HTTPConnection) -> str:
    """The session token the cookie names, unless the request may not use it (a
    cross-site state-changing request: pages.sessions.CrossSiteGuard)."""
    if "session" not in conn.scope or conn.scope.get(REFUSED):
        return ""
    sid = conn.session.get("sid")
    return sid if isinstance(sid, str) else ""


def _session_principal(conn: HTTPConnection, token: str) -> Principal | None:
    store: Store = conn.app.state.store
    lifetimes = conn.app.state.settings.session_lifetimes
    user_id = sessions.user_for(store, token, lifetimes)
    return principal_for_user(store, user_id) if user_id is not None else None


def require_principal(conn: HTTPConnection) -> Principal:
    """The caller, or 401 (403 for a signed-in browser's cross-site request, saying why)."""
    found = principal(conn)
    if found is None:
        refused = conn.scope.get(REFUSED)
        if refused:
            raise HTTPException(403, f"cross-site request refused: {refused}")
        raise HTTPException(401, "missing or invalid API key (Authorization: Bearer <key>)")
    return found


def visible_team_ids(conn: HTTPConnection, who: Principal) -> list[int] | None:
    """The ids of `who`'s own teams, or None for all (an admin). For what `who` may read
    (its own teams and those that are not private) ask pages.authz.readable_team_ids."""
    if who.admin:
        return None
    return sorted(who.team_ids)
