"""Retention: finished deliveries, unconfirmed subscribers and audit rows are kept for a
configurable time, then deleted by the daily purge (`engine.events.handle_purge`).

Each purge deletes in short transactions of `PURGE_CHUNK` rows (on SQLite a transaction
holds the one write lock every webhook waits for) and never touches live rows:

- deliveries: only finished ones (`sent`, `failed`, `superseded`, `unchanged`), by their last
  change. A pending or sending delivery is work; and a finished one's dedup key, which keeps
  a retried fan-out from sending twice, is only needed while its fan-out may still be
  retried (minutes).
- subscribers: only unconfirmed ones (an email or SMS whose owner never clicked the link),
  by creation. Their confirmation link stops working then.
- audit rows: by time.

A retention of zero or less keeps everything of that kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .db import Store
from .tables import audit_log, deliveries, subscribers, utcnow

#: Rows deleted per transaction.
PURGE_CHUNK = 2000


@dataclass(frozen=True)
class Purged:
    """How many rows of each kind one purge deleted."""

    deliveries: int = 0
    unconfirmed_subscribers: int = 0
    audit_rows: int = 0


def _purge(store: Store, table: sa.Table, where: Any) -> int:
    total = 0
    while True:
        with store.begin() as conn:
            # Any chunk of the matching rows, in no order: `ORDER BY id` made SQLite walk
            # the whole table by rowid instead of the index that finds them
            # (tests/reliability/test_retention_plan.py).
            ids = (
                conn.execute(sa.select(table.c.id).where(where).limit(PURGE_CHUNK)).scalars().all()
            )
            if not ids:
                return total
            conn.execute(table.delete().where(table.c.id.in_(ids)))
        total += len(ids)


def purge_deliveries(store: Store, days: int, now: datetime | None = None) -> int:
    """Delete finished deliveries last changed more than `days` ago."""
    if days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    return _purge(
        store,
        deliveries,
        sa.and_(
            deliveries.c.status.in_(("sent", "failed", "superseded", "unchanged")),
            deliveries.c.updated_at < cutoff,
        ),
    )


def purge_unconfirmed_subscribers(store: Store, days: int, now: datetime | None = None) -> int:
    """Delete subscribers still unconfirmed `days` after they subscribed."""
    if days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    return _purge(
        store,
        subscribers,
        sa.and_(subscribers.c.confirmed.is_(False), subscribers.c.created_at < cutoff),
    )


def purge_audit(store: Store, days: int, now: datetime | None = None) -> int:
    """Delete audit rows older than `days`."""
    if days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    return _purge(store, audit_log, audit_log.c.at < cutoff)


def purge_all(store: Store, settings: Any, now: datetime | None = None) -> Purged:
    """Every retention of `settings` (`delivery_retention_days`,
    `unconfirmed_retention_days`, `audit_retention_days`) applied once."""
    return Purged(
        deliveries=purge_deliveries(store, settings.delivery_retention_days, now),
        unconfirmed_subscribers=purge_unconfirmed_subscribers(
            store, settings.unconfirmed_retention_days, now
        ),
        audit_rows=purge_audit(store, settings.audit_retention_days, now),
    )
