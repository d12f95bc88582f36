"""Server-side sessions for signed-in users.

The browser's cookie carries a random token (`pages.sessions` signs it into the cookie);
the `sessions` row is keyed by the token's SHA-256, so the table alone signs nobody in. A
session ends when its row goes: at sign-out, "sign out everywhere", a password change or
a deactivation (`end_all`), when its user is deleted (the foreign key cascades), after
`idle` without a request, and at its absolute expiry. Every sign-in makes a new token, so
nothing set before it carries over.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db import Store
from .security import token_digest
from .settings import Lifetimes
from .tables import sessions, users, utcnow

log = logging.getLogger(__name__)

#: How stale `last_seen_at` may get before a request writes it again: idle expiry is that
#: much coarser, and a busy reader does not write on every request.
_TOUCH_EVERY = timedelta(minutes=1)


_key = token_digest


def start(
    conn: Connection,
    user_id: int,
    lifetimes: Lifetimes,
    *,
    method: str = "password",
    now: datetime | None = None,
) -> str:
    """A new session for `user_id`; returns its token (for the cookie, never stored).

    Also drops every expired session (they are dead already; this keeps the table small)."""
    now = now or utcnow()
    conn.execute(
        sessions.delete().where(
            sa.or_(sessions.c.expires_at <= now, sessions.c.last_seen_at <= now - lifetimes.idle)
        )
    )
    token = secrets.token_urlsafe(32)
    conn.execute(
        sessions.insert().values(
            id=_key(token),
            user_id=user_id,
            method=method,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetimes.absolute,
        )
    )
    return token


def user_for(
    store: Store, token: str, lifetimes: Lifetimes, *, now: datetime | None = None
) -> int | None:
    """The id of the active user whose live session `token` names, or None."""
    now = now or utcnow()
    key = _key(token)
    with store.read() as conn:
        row = conn.execute(
            sa.select(sessions.c.user_id, sessions.c.last_seen_at, sessions.c.expires_at)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id == key, users.c.active.is_(True))
        ).first()
    if row is None or row.expires_at <= now or row.last_seen_at <= now - lifetimes.idle:
        return None
    if now - row.last_seen_at > _TOUCH_EVERY:
        # Best effort, only when the write lock is free at once (this runs on request
        # paths that must not queue behind a flood of deliveries); a later request writes it.
        try:
            with store.begin(wait=0) as conn:
                conn.execute(sessions.update().where(sessions.c.id == key).values(last_seen_at=now))
        except sa.exc.OperationalError as exc:
            log.debug("session last-seen time not recorded now: %s", exc)
    return int(row.user_id)


def end(conn: Connection, token: str) -> None:
    """End the session `token` names (nothing happens for an unknown token)."""
    conn.execute(sessions.delete().where(sessions.c.id == _key(token)))


def end_all(conn: Connection, user_id: int) -> int:
    """End every session of `user_id`; returns how many there were."""
    return int(conn.execute(sessions.delete().where(sessions.c.user_id == user_id)).rowcount)
