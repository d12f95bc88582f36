"""Personal feed links: one user's token URL for one page's feeds (RSS, Atom) and calendar.

Feed readers and calendar apps send no cookie, so a private page's members read its feeds
through a link that carries a random 256-bit token. The link acts for its user, never
more: each use asks engine.access again with the user as they are now (a user taken off
the page's teams, or deactivated, reads nothing with it), and only for the page it was
made for. The store keeps the token's SHA-256 and a prefix that names it in listings; the
link is shown once, when made. A user revokes their own links; deactivating a user revokes
all of theirs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import crud
from .errors import NotFoundError
from .security import token_digest
from .tables import feed_tokens, status_pages, users, utcnow

PREFIX = "bf_"
#: `last_used_at` is a hint: written at most this often per link.
_LAST_USED_SECONDS = 3600


@dataclass(frozen=True)
class NewFeedToken:
    """A link just made: `token` is its secret, shown this once."""

    id: int
    token: str
    prefix: str


@dataclass(frozen=True)
class FeedToken:
    """A user's link as listings show it (never the token)."""

    id: int
    prefix: str
    page_id: int
    page_slug: str
    page_name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class Holder:
    """Whom a token acts for, and for which page."""

    token_id: int
    user_id: int
    page_id: int
    last_used_at: datetime | None


def create(conn: Connection, user_id: int, page_id: int, *, actor: str) -> NewFeedToken:
    """Make a feed link for `user_id` on `page_id`. The caller has checked that the user may
    read the page (engine.access); each use checks again."""
    page = crud.row(conn, status_pages, page_id, "status page")
    token = PREFIX + secrets.token_urlsafe(32)
    prefix = token[: len(PREFIX) + 6]
    token_id = crud.insert(
        conn,
        feed_tokens,
        {
            "token_hash": token_digest(token),
            "prefix": prefix,
            "user_id": user_id,
            "page_id": page_id,
            "created_at": utcnow(),
        },
    )
    crud.audit(conn, actor, "create", "feed link", f"{page.slug} ({prefix})", team_id=page.team_id)
    return NewFeedToken(token_id, token, prefix)


def list_for(conn: Connection, user_id: int) -> list[FeedToken]:
    """The user's links that work (not revoked), newest first."""
    rows = conn.execute(
        sa.select(
            feed_tokens.c.id,
            feed_tokens.c.prefix,
            feed_tokens.c.page_id,
            feed_tokens.c.created_at,
            feed_tokens.c.last_used_at,
            status_pages.c.slug,
            status_pages.c.name,
        )
        .join(status_pages, status_pages.c.id == feed_tokens.c.page_id)
        .where(feed_tokens.c.user_id == user_id, feed_tokens.c.revoked_at.is_(None))
        .order_by(feed_tokens.c.id.desc())
    )
    return [
        FeedToken(r.id, r.prefix, r.page_id, r.slug, r.name, r.created_at, r.last_used_at)
        for r in rows
    ]


def revoke(conn: Connection, token_id: int, user_id: int, *, actor: str) -> None:
    """Revoke the user's own link `token_id` (it stops working at once); `NotFoundError`
    for a link that is not theirs or is already revoked (the same answer: another user's
    links are not disclosed)."""
    row = conn.execute(
        sa.select(feed_tokens.c.prefix, status_pages.c.slug, status_pages.c.team_id)
        .join(status_pages, status_pages.c.id == feed_tokens.c.page_id)
        .where(
            feed_tokens.c.id == token_id,
            feed_tokens.c.user_id == user_id,
            feed_tokens.c.revoked_at.is_(None),
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no feed link {token_id}")
    conn.execute(
        feed_tokens.update().where(feed_tokens.c.id == token_id).values(revoked_at=utcnow())
    )
    crud.audit(
        conn, actor, "delete", "feed link", f"{row.slug} ({row.prefix})", team_id=row.team_id
    )


def revoke_all(conn: Connection, user_id: int) -> int:
    """Revoke every link of `user_id` (deactivation); how many were working."""
    return conn.execute(
        feed_tokens.update()
        .where(feed_tokens.c.user_id == user_id, feed_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount


def holder(conn: Connection, token: str) -> Holder | None:
    """Whom `token` acts for: None for an unknown or revoked token, or one whose user is
    deactivated."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    row = conn.execute(
        sa.select(
            feed_tokens.c.id,
            feed_tokens.c.user_id,
            feed_tokens.c.page_id,
            feed_tokens.c.last_used_at,
        )
        .join(users, users.c.id == feed_tokens.c.user_id)
        .where(
            feed_tokens.c.token_hash == token_digest(token),
            feed_tokens.c.revoked_at.is_(None),
            users.c.active.is_(True),
        )
    ).first()
    if row is None:
        return None
    return Holder(row.id, row.user_id, row.page_id, row.last_used_at)


def touch(conn: Connection, token_id: int, now: datetime) -> None:
    """Note that the link was used (a hint for its user's listing)."""
    conn.execute(feed_tokens.update().where(feed_tokens.c.id == token_id).values(last_used_at=now))


def stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether `touch` is due."""
    return last_used_at is None or (now - last_used_at).total_seconds() > _LAST_USED_SECONDS
