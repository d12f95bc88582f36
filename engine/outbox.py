"""The transactional outbox: work for the workers, written with the change that causes it.

A change and its follow-up work commit together (`emit` takes the caller's connection), so
a crash between the commit and the enqueue loses nothing: the dispatcher
(`workers.dispatch`) claims rows that are not done and enqueues them. Rows are claimed by
state (`done_at IS NULL` and no live claim), never by "id greater than the last one seen",
since sequence ids can commit out of order.

Delivery to handlers is at least once: a handler that dies half-way runs again after the
claim's lease ends, so every handler is idempotent (renders overwrite, deliveries are
marked sent conditionally).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db import Store
from .tables import outbox, utcnow

#: How long a claimed row may stay unfinished before another dispatcher takes it over, by
#: default (`Settings.outbox_lease`, `BEACON_OUTBOX_LEASE_SECONDS`: every process of a
#: deployment must use the same). A running job renews its rows' claim; a claim whose job
#: died with its worker, or was lost with Redis, waits this long before another takes it.
LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


def emit(conn: Connection, kind: str, payload: Mapping[str, Any] | None = None) -> None:
    """Record work of `kind` in the caller's transaction."""
    conn.execute(outbox.insert().values(kind=kind, payload=dict(payload or {})))


def emit_many(conn: Connection, kind: str, payloads: Iterable[Mapping[str, Any]]) -> None:
    rows = [{"kind": kind, "payload": dict(p)} for p in payloads]
    if rows:
        conn.execute(outbox.insert(), rows)


# Built once: every dispatcher pass runs them (several a second under load).
_CLAIMABLE = (
    sa.select(outbox.c.id, outbox.c.kind, outbox.c.payload, outbox.c.attempts)
    .where(outbox.c.done_at.is_(None))
    .where(sa.or_(outbox.c.claimed_at.is_(None), outbox.c.claimed_at < sa.bindparam("stale")))
    .order_by(outbox.c.id)
    .limit(sa.bindparam("limit"))
)
_CLAIMABLE_PG = _CLAIMABLE.with_for_update(skip_locked=True)
_CLAIMABLE_PEEK = _CLAIMABLE.with_only_columns(outbox.c.id)


def _kinds(
    kinds: frozenset[str] | None, others: bool
) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    """The claim's statements (peek, SQLite, PostgreSQL) for rows of `kinds` (`others`:
    of every kind but those), built once per choice."""
    key = (kinds, others)
    found = _BY_KINDS.get(key)
    if found is None:
        where = (
            sa.true()
            if kinds is None
            else outbox.c.kind.not_in(sorted(kinds))
            if others
            else outbox.c.kind.in_(sorted(kinds))
        )
        found = _BY_KINDS[key] = (
            _CLAIMABLE_PEEK.where(where),
            _CLAIMABLE.where(where),
            _CLAIMABLE_PG.where(where),
        )
    return found


_BY_KINDS: dict[tuple[frozenset[str] | None, bool], Any] = {}


def claim(
    store: Store,
    claimer: str,
    *,
    limit: int = 500,
    now: datetime | None = None,
    lease: timedelta = LEASE,
    kinds: frozenset[str] | None = None,
    others: bool = False,
) -> list[OutboxRow]:
    """Claim up to `limit` rows that are not done and not claimed by a live lease (a claim
    younger than `lease`); only rows of `kinds` when given, or with `others`, rows of every
    kind but those (embedded mode's store process evaluates, its web process does the
    rest).

    On PostgreSQL concurrent dispatchers skip each other's locked rows; on SQLite the
    write transaction (`BEGIN IMMEDIATE`) serialises them.
    """
    now = now or utcnow()
    params = {"stale": now - lease, "limit": limit}
    peek, claimable, claimable_pg = _kinds(kinds, others)
    # Most passes find nothing: look first without taking SQLite's write lock, which the
    # intake's group commit is waiting for.
    with store.read() as conn:
        if conn.execute(peek, params).first() is None:
            return []
    with store.begin() as conn:
        rows = conn.execute(claimable_pg if store.is_postgres else claimable, params).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        conn.execute(
            outbox.update()
            .where(outbox.c.id.in_(ids))
            .values(claimed_at=now, claimed_by=claimer, attempts=outbox.c.attempts + 1)
        )
    return [OutboxRow(r.id, r.kind, dict(r.payload or {}), r.attempts + 1) for r in rows]


def take(store: Store, ids: Sequence[int]) -> list[OutboxRow]:
    """The rows among `ids` that are still not done (a job's view before it runs them)."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(outbox.c.id, outbox.c.kind, outbox.c.payload, outbox.c.attempts)
            .where(outbox.c.id.in_(list(ids)))
            .where(outbox.c.done_at.is_(None))
            .order_by(outbox.c.id)
        ).all()
    return [OutboxRow(r.id, r.kind, dict(r.payload or {}), r.attempts) for r in rows]


def mark_done(store: Store, ids: Sequence[int], now: datetime | None = None) -> int:
    """Mark rows done if they are not already; returns how many this call marked."""
    if not ids:
        return 0
    with store.begin() as conn:
        result = conn.execute(
            outbox.update()
            .where(outbox.c.id.in_(list(ids)))
            .where(outbox.c.done_at.is_(None))
            .values(done_at=now or utcnow(), error=None)
        )
    return int(result.rowcount or 0)


def mark_failed(
    store: Store, ids: Sequence[int], error: str, retry_at: datetime, lease: timedelta = LEASE
) -> None:
    """Record a handler's failure; the rows become claimable again at `retry_at` (for
    dispatchers that claim with `lease`)."""
    if not ids:
        return
    # A claim that looks `lease` old at `retry_at` is free again then.
    with store.begin() as conn:
        conn.execute(
            outbox.update()
            .where(outbox.c.id.in_(list(ids)))
            .where(outbox.c.done_at.is_(None))
            .values(claimed_at=retry_at - lease, error=error[:2000])
        )


def renew(store: Store, ids: Sequence[int], now: datetime | None = None) -> None:
    """Extend the claim on rows still being handled (their job renews it while it runs), so
    that a handler longer than the lease is not taken over by another dispatcher."""
    if not ids:
        return
    with store.begin() as conn:
        conn.execute(
            outbox.update()
            .where(outbox.c.id.in_(list(ids)))
            .where(outbox.c.done_at.is_(None))
            .values(claimed_at=now or utcnow())
        )


def release(store: Store, ids: Sequence[int]) -> None:
    """Give back claimed rows that were never handed to a worker (the queue was down): the
    next pass may claim them at once, and the claim does not count as an attempt."""
    if not ids:
        return
    with store.begin() as conn:
        conn.execute(
            outbox.update()
            .where(outbox.c.id.in_(list(ids)))
            .where(outbox.c.done_at.is_(None))
            .values(claimed_at=None, claimed_by=None, attempts=outbox.c.attempts - 1)
        )


def release_claims(store: Store, claimer_prefix: str = "") -> None:
    """Free every live claim (embedded mode at start: its in-process queue died with it)."""
    query = outbox.update().where(outbox.c.done_at.is_(None)).where(outbox.c.claimed_at.isnot(None))
    if claimer_prefix:
        query = query.where(outbox.c.claimed_by.startswith(claimer_prefix))
    with store.begin() as conn:
        conn.execute(query.values(claimed_at=None, claimed_by=None))


def purge_done(store: Store, older_than: datetime, chunk: int = 2000) -> int:
    """Delete rows done before `older_than`, `chunk` per transaction (never a long hold of
    SQLite's write lock); returns how many were deleted. Failed rows are never done: kept."""
    total = 0
    while True:
        with store.begin() as conn:
            ids = (
                conn.execute(
                    sa.select(outbox.c.id)
                    .where(outbox.c.done_at.isnot(None), outbox.c.done_at < older_than)
                    .order_by(outbox.c.id)
                    .limit(chunk)
                )
                .scalars()
                .all()
            )
            if not ids:
                return total
            conn.execute(outbox.delete().where(outbox.c.id.in_(ids)))
        total += len(ids)


def pending_count(store: Store) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.done_at.is_(None))
            ).scalar_one()
        )
