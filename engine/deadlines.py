"""Deadlines: work due at a time (a rule's `for`, resolve damping, maintenance start and end,
retries, purges), kept as rows so that they survive restarts and fire once across processes.

A ticker (`workers.dispatch`) calls `fire_due`, which in one transaction deletes the due rows
and writes an outbox row `deadline.<kind>` for each: the hand-over is atomic, so a deadline
fires exactly once however many tickers run. RQ's own scheduler is not used (see
shared/notes/rq-embedded.md: scheduled jobs stayed scheduled in embedded mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .db import Store
from .tables import deadlines, outbox, utcnow

DEADLINE_PREFIX = "deadline."


@dataclass(frozen=True)
class Deadline:
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]


def schedule(
    conn: Connection,
    kind: str,
    key: str,
    due_at: datetime,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Set the deadline (`kind`, `key`) to `due_at`, replacing an earlier one with that name."""
    statement = _SCHEDULE_PG if conn.dialect.name == "postgresql" else _SCHEDULE_SQLITE
    conn.execute(
        statement,
        {"kind": kind, "key": key, "due_at": due_at, "payload": dict(payload or {})},
    )


def cancel(conn: Connection, kind: str, key: str) -> bool:
    """Remove the deadline if it is still pending; true if there was one."""
    result = conn.execute(_CANCEL, {"kind": kind, "key": key})
    return bool(result.rowcount)


# Built once: the rules engine schedules or cancels a deadline for every activation it
# saves, and building these cost more than running them.
def _schedule(insert: Any) -> Any:
    new = insert(deadlines).values(
        kind=sa.bindparam("kind"),
        key=sa.bindparam("key"),
        due_at=sa.bindparam("due_at"),
        payload=sa.bindparam("payload"),
    )
    return new.on_conflict_do_update(
        index_elements=["kind", "key"],
        set_={"due_at": new.excluded.due_at, "payload": new.excluded.payload},
    )


_SCHEDULE_PG = _schedule(postgresql.insert)
_SCHEDULE_SQLITE = _schedule(sqlite.insert)
_CANCEL = deadlines.delete().where(
    deadlines.c.kind == sa.bindparam("kind"), deadlines.c.key == sa.bindparam("key")
)


def get(conn: Connection, kind: str, key: str) -> Deadline | None:
    row = conn.execute(
        sa.select(deadlines).where(deadlines.c.kind == kind, deadlines.c.key == key)
    ).first()
    if row is None:
        return None
    return Deadline(row.kind, row.key, row.due_at, dict(row.payload or {}))


# Built once: every dispatcher pass runs them.
_DUE = (
    sa.select(
        deadlines.c.id, deadlines.c.kind, deadlines.c.key, deadlines.c.due_at, deadlines.c.payload
    )
    .where(deadlines.c.due_at <= sa.bindparam("now"))
    .order_by(deadlines.c.due_at, deadlines.c.id)
    .limit(sa.bindparam("limit"))
)
_DUE_PG = _DUE.with_for_update(skip_locked=True)
_DUE_PEEK = _DUE.with_only_columns(deadlines.c.id)


def fire_due(store: Store, now: datetime | None = None, *, limit: int = 500) -> int:
    """Turn every deadline due by `now` into an outbox row; returns how many fired."""
    params = {"now": now or utcnow(), "limit": limit}
    # Look first without the write lock: most passes find nothing due.
    with store.read() as conn:
        if conn.execute(_DUE_PEEK, params).first() is None:
            return 0
    with store.begin() as conn:
        rows = conn.execute(_DUE_PG if store.is_postgres else _DUE, params).all()
        if not rows:
            return 0
        conn.execute(deadlines.delete().where(deadlines.c.id.in_([r.id for r in rows])))
        conn.execute(
            outbox.insert(),
            [
                {
                    "kind": DEADLINE_PREFIX + r.kind,
                    "payload": {
                        **dict(r.payload or {}),
                        "deadline_key": r.key,
                        "due_at": r.due_at.isoformat(),
                    },
                }
                for r in rows
            ],
        )
    return len(rows)


def next_due(store: Store) -> datetime | None:
    """When the earliest pending deadline is due (None without any)."""
    with store.read() as conn:
        value = conn.execute(sa.select(sa.func.min(deadlines.c.due_at))).scalar()
    if value is None:
        return None
    # func.min loses the column type on SQLite, which then answers with text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
