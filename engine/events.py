"""The durable event log: alert events stored once, handed to evaluation, purged when old.

Every event is stored in the same transaction as the outbox row `evaluate` that hands its
source's partition to the rules engine (contracts: intake -> rules), so an accepted event is
evaluated even if the process dies right after answering. A retried delivery is recognised
by its fingerprint (unique per source) and has no second effect: the existing row's id is
returned instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import deadlines, outbox, retention
from .activations.claims import recount_firing_alerts
from .db import Store, json_value, sqlite_time
from .models import AlertEvent
from .sources import Source, touch_last_event
from .tables import alert_events, utcnow
from .tables import outbox as outbox_table

log = logging.getLogger(__name__)

EVALUATE = "evaluate"
PURGE_DEADLINE = "events.purge"
PURGE_KEY = "daily"
PURGE_EVERY = timedelta(days=1)
#: How long done outbox rows are kept (the daily purge drops older ones).
OUTBOX_KEPT = timedelta(days=7)
#: Rows deleted per transaction when purging, so a purge never holds the write lock long.
PURGE_CHUNK = 2000

#: The outcome of a tool's test or ping delivery (never evaluated). Every outcome has the
#: keys `result` (see `engine.activations.Outcome`; also test, error), `matched` (rule ids) and
#: `effects` (what happened, in words); evaluated ones also carry `rules_version`.
TEST_OUTCOME: dict[str, object] = {
    "result": "test",
    "matched": [],
    "effects": ["test delivery: acknowledged, not evaluated"],
}


def fingerprint(event: AlertEvent) -> str:
    """What makes a delivery of this event a retry: the tool's delivery id (with the alert's
    dedup key and status, since one delivery may carry several alerts), or else its dedup
    key, status and the tool's own time. The source is the other half of the unique key.

    A test event is never the retry of a real one, nor the other way round: a payload pasted
    into the test route (or `beacon events send --test`) must not make the tool's own
    delivery of the same alert a duplicate, which would be acknowledged and never evaluated.
    """
    if event.delivery_id:
        parts = ["delivery", event.delivery_id, event.dedup_key, event.status.value]
    else:
        parts = ["alert", event.dedup_key, event.status.value, event.occurred_at.isoformat()]
    if event.test:
        parts.append("test")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Stored:
    """One event's place in the log: its id, and whether it was already there."""

    id: int
    duplicate: bool


@dataclass(frozen=True)
class Submission:
    """One delivery's events for one source, as the intake hands them to the store."""

    source: Source
    events: Sequence[AlertEvent]
    received_at: datetime
    #: False for events Beacon made up itself (the test route): the source sent nothing.
    touch: bool = True
    #: The events' rows, when the caller made them before handing the submission over
    #: (`prepared`): the group commit's transaction, which every request of its batch
    #: waits for, then only writes them.
    rows: tuple[dict[str, Any], ...] | None = None


def prepared(submission: Submission, *, sqlite: bool) -> Submission:
    """`submission` with its events' rows made now, outside any transaction (on SQLite
    with the insert's parameters too): the intake makes them in the request, while the
    batch before it commits."""
    rows = tuple(_row(submission.source, e) for e in submission.events)
    if sqlite:
        for row in rows:
            row[_SQLITE_PARAMS] = _sqlite_params(row)
    return replace(submission, rows=rows)


def _text(value: str) -> str:
    """`value` with NUL characters as U+FFFD: PostgreSQL's text cannot hold NUL, and a
    tool's stray NUL byte must not cost its alert (stored the same on both databases)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def _row(source: Source, event: AlertEvent) -> dict[str, Any]:
    return {
        "source_id": source.id,
        "dedup_key": _text(event.dedup_key),
        "status": event.status.value,
        "severity": event.severity.value,
        "summary": _text(event.summary),
        "details": _text(event.details),
        "labels": dict(event.labels),
        "links": list(event.links),
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "raw": event.raw,
        "test": event.test,
        "fingerprint": fingerprint(event),
        "partition": source.partition,
        # A tool's test delivery is acknowledged and shown, never evaluated.
        "evaluated_at": event.received_at if event.test else None,
        "outcome": dict(TEST_OUTCOME) if event.test else None,
    }


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    if b"\\u0000" in text:
        # PostgreSQL's jsonb refuses NUL too (see `_text`); rare, so scrubbed only then.
        text = orjson.dumps(_scrub(value), default=str, option=orjson.OPT_NON_STR_KEYS)
    return text.decode()


_COLUMNS = (
    "source_id",
    "dedup_key",
    "status",
    "severity",
    "summary",
    "details",
    "labels",
    "links",
    "occurred_at",
    "received_at",
    "raw",
    "test",
    "fingerprint",
    "partition",
    "evaluated_at",
    "outcome",
)
#: Rows per INSERT statement on SQLite: 16 parameters each, under the limit of 32766 that
#: SQLite has had since 3.32 (the `RETURNING` used here needs 3.35; Debian 12 has 3.40).
_SQLITE_ROWS_PER_INSERT = 500


#: Where a prepared row keeps its SQLite parameters (not a column: `_COLUMNS` names those).
_SQLITE_PARAMS = "sqlite parameters"


def _sqlite_params(r: dict[str, Any]) -> tuple[Any, ...]:
    """A row as the SQLite insert's parameters, in `_COLUMNS` order."""
    return (
        r["source_id"],
        r["dedup_key"],
        r["status"],
        r["severity"],
        r["summary"],
        r["details"],
        _json_text(r["labels"]),
        _json_text(r["links"]),
        sqlite_time(r["occurred_at"]),
        sqlite_time(r["received_at"]),
        _json_text(r["raw"]),
        1 if r["test"] else 0,
        r["fingerprint"],
        r["partition"],
        sqlite_time(r["evaluated_at"]),
        _json_text(r["outcome"]),
    )


def _insert_sqlite(conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """The events inserted straight through the driver, skipping those already stored.

    This is the intake's hot path: SQLAlchemy's per-parameter processing and the stdlib
    JSON encoder took most of the writer's time per event, and every driver call hands the
    GIL back and forth with the event loop; one multi-row statement per batch does neither.
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    found: list[tuple[int, int, str]] = []
    try:
        for start in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
            chunk = rows[start : start + _SQLITE_ROWS_PER_INSERT]
            params: list[Any] = []
            for r in chunk:
                params.extend(r.get(_SQLITE_PARAMS) or _sqlite_params(r))
            one = "(" + ",".join("?" * len(_COLUMNS)) + ")"
            cursor.execute(
                f"INSERT INTO alert_events ({', '.join(_COLUMNS)}) "
                f"VALUES {','.join([one] * len(chunk))} "
                "ON CONFLICT (source_id, fingerprint) DO NOTHING "
                "RETURNING id, source_id, fingerprint",
                params,
            )
            found.extend(cursor.fetchall())
    finally:
        cursor.close()
    return found


#: One statement whatever the batch's size: one array per column, `unnest` makes the rows.
#: Its text never changes, so the driver and the server parse and plan it once, where a
#: multi-row VALUES list is a new statement for every batch size.
#: `WITH ORDINALITY ... ORDER BY` keeps the arrays' order, so ids follow arrival order.
_POSTGRES_INSERT = (
    f"INSERT INTO alert_events ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(_COLUMNS)} FROM unnest("
    "%s::integer[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::jsonb[], %s::jsonb[], %s::timestamptz[], %s::timestamptz[], %s::jsonb[], "
    "%s::boolean[], %s::text[], %s::text[], %s::timestamptz[], %s::jsonb[]) "
    f"WITH ORDINALITY AS new ({', '.join(_COLUMNS)}, n) ORDER BY n "
    "ON CONFLICT (source_id, fingerprint) DO NOTHING "
    "RETURNING id, source_id, fingerprint"
)
_JSON_COLUMNS = frozenset({"labels", "links", "raw", "outcome"})


def _insert_postgres(conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """The events inserted through the driver in one `unnest` statement, skipping those
    already stored (the intake's hot path on PostgreSQL)."""
    arrays = [
        [_json_text(r[name]) for r in rows] if name in _JSON_COLUMNS else [r[name] for r in rows]
        for name in _COLUMNS
    ]
    # Through SQLAlchemy's driver-level call: the same text, and the driver's errors still
    # arrive as `DBAPIError` (the intake answers them 503, nothing stored).
    return [tuple(row) for row in conn.exec_driver_sql(_POSTGRES_INSERT, tuple(arrays))]


@dataclass(frozen=True)
class StoredBatch:
    """What storing a batch did: per submission, per event, its place; and whether it
    wrote an outbox `evaluate` row (then the dispatcher is worth waking)."""

    results: list[list[Stored]]
    emitted: bool


def store(conn: Connection, submissions: Sequence[Submission]) -> list[list[Stored]]:
    """Store the submissions' events in the caller's transaction; per submission, per
    event, its id and whether it was a duplicate (see `store_batch`)."""
    return store_batch(conn, submissions).results


def store_batch(conn: Connection, submissions: Sequence[Submission]) -> StoredBatch:
    """Store the submissions' events in the caller's transaction. Every partition with new
    events to evaluate gets an outbox `evaluate` row, unless one is already waiting to be
    claimed (its handler will see these events too); each source's `last_event_at` moves
    forward."""
    rows: list[dict[str, Any]] = []
    for sub in submissions:
        rows.extend(sub.rows if sub.rows is not None else (_row(sub.source, e) for e in sub.events))
    if not rows:
        return StoredBatch([[] for _ in submissions], False)
    if conn.dialect.name == "sqlite":
        inserted = _insert_sqlite(conn, rows)
    else:
        inserted = _insert_postgres(conn, rows)
    new: dict[tuple[int, str], int] = {(sid, fp): id_ for id_, sid, fp in inserted}
    missing = {(r["source_id"], r["fingerprint"]) for r in rows} - set(new)
    existing = _existing(conn, missing)

    results: list[list[Stored]] = []
    claimed: set[tuple[int, str]] = set()
    partitions: set[str] = set()
    last_seen: dict[int, datetime] = {}
    cursor = 0
    for sub in submissions:
        out = []
        for _event in sub.events:
            row = rows[cursor]
            cursor += 1
            key = (row["source_id"], row["fingerprint"])
            if key in new and key not in claimed:
                # The first of identical events in this batch is the new one; later copies
                # (a retry racing its original) are duplicates of it.
                claimed.add(key)
                out.append(Stored(new[key], False))
                if not row["test"]:
                    partitions.add(row["partition"])
            else:
                out.append(Stored(new.get(key) or existing[key], True))
        results.append(out)
        if sub.events and sub.touch:
            seen = last_seen.get(sub.source.id)
            last_seen[sub.source.id] = max(sub.received_at, seen) if seen else sub.received_at
    if partitions:
        partitions -= _waiting_evaluations(conn)
    outbox.emit_many(conn, EVALUATE, [{"partition": p} for p in sorted(partitions)])
    if conn.dialect.name == "sqlite":
        _touch_sqlite(conn, last_seen)
    else:
        touch_last_event(conn, last_seen)
    return StoredBatch(results, bool(partitions))


# The two statements every group commit runs, through the driver on SQLite as the insert
# is: through SQLAlchemy they cost more than the batch's fsync'd commit.
_WAITING_SQLITE = (
    "SELECT payload FROM outbox WHERE kind = ? AND done_at IS NULL AND claimed_at IS NULL"
)
_TOUCH_SQLITE = (
    "UPDATE alert_sources SET last_event_at = ? "
    "WHERE id = ? AND (last_event_at IS NULL OR last_event_at < ?)"
)


def _touch_sqlite(conn: Connection, last_seen: dict[int, datetime]) -> None:
    """`sources.touch_last_event` on SQLite (the same text form of the time)."""
    if not last_seen:
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for source_id, at in last_seen.items():
            text = sqlite_time(at)
            cursor.execute(_TOUCH_SQLITE, (text, source_id, text))
    finally:
        cursor.close()


# Built once: these run in every group commit, and building them cost more than running them.
_WAITING = sa.select(outbox_table.c.payload).where(
    outbox_table.c.kind == EVALUATE,
    outbox_table.c.done_at.is_(None),
    outbox_table.c.claimed_at.is_(None),
)
_WAITING_PG = _WAITING.with_for_update(skip_locked=True)


def _waiting_evaluations(conn: Connection) -> set[str]:
    """Partitions with an `evaluate` row that no dispatcher has claimed yet.

    Under load a row per batch would make the dispatcher claim, run and mark one tiny job
    per commit. A waiting row is enough: it is claimed only after this transaction commits,
    so its handler sees these events. On PostgreSQL the rows are locked until then, and the
    dispatcher's claim (`SKIP LOCKED`) passes them by; a row another writer holds is skipped
    here too (that writer may commit first), so this batch gets a row of its own. SQLite's
    writers run one at a time.
    """
    if conn.dialect.name == "sqlite":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            payloads = [
                json_value(text) for (text,) in cursor.execute(_WAITING_SQLITE, (EVALUATE,))
            ]
        finally:
            cursor.close()
    else:
        payloads = list(conn.execute(_WAITING_PG).scalars())
    return {str(payload.get("partition")) for payload in payloads if isinstance(payload, dict)}


def stored_already(conn: Connection, source_id: int, events: Sequence[AlertEvent]) -> set[int]:
    """The positions in `events` of those the source's log already holds: deliveries of
    them again would be retries."""
    prints = [fingerprint(e) for e in events]
    found = _existing(conn, {(source_id, fp) for fp in prints})
    return {i for i, fp in enumerate(prints) if (source_id, fp) in found}


def _existing(conn: Connection, keys: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    found: dict[tuple[int, str], int] = {}
    by_source: dict[int, list[str]] = {}
    for source_id, fp in keys:
        by_source.setdefault(source_id, []).append(fp)
    for source_id, fps in by_source.items():
        for row in conn.execute(
            sa.select(alert_events.c.id, alert_events.c.fingerprint).where(
                alert_events.c.source_id == source_id, alert_events.c.fingerprint.in_(fps)
            )
        ):
            found[(source_id, row.fingerprint)] = row.id
    return found


def recent(
    conn: Connection,
    source_id: int,
    limit: int,
    before: int | None = None,
    after: int | None = None,
) -> list[Any]:
    """The source's events, newest first (`before`: ids below it; `after`: ids above it)."""
    query = sa.select(alert_events).where(alert_events.c.source_id == source_id)
    if before is not None:
        query = query.where(alert_events.c.id < before)
    if after is not None:
        query = query.where(alert_events.c.id > after)
    return list(conn.execute(query.order_by(alert_events.c.id.desc()).limit(limit)))


def store_one(store_: Store, submission: Submission) -> list[Stored]:
    """Store one submission in its own transaction (the CLI and test route's path)."""
    with store_.begin() as conn:
        return store(conn, [submission])[0]


# --- retention ----------------------------------------------------------------------------


def ensure_purge_scheduled(conn: Connection, now: datetime | None = None) -> None:
    """Schedule the daily purge unless it is already pending (it reschedules itself)."""
    if deadlines.get(conn, PURGE_DEADLINE, PURGE_KEY) is None:
        deadlines.schedule(conn, PURGE_DEADLINE, PURGE_KEY, (now or utcnow()) + PURGE_EVERY)


def purge(store_: Store, retention_days: int, now: datetime | None = None) -> int:
    """Delete events received more than `retention_days` ago, in short transactions;
    returns how many were deleted. A retention of zero or less keeps everything."""
    if retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    total = 0
    while True:
        with store_.begin() as conn:
            ids = (
                conn.execute(
                    sa.select(alert_events.c.id)
                    .where(alert_events.c.received_at < cutoff)
                    .order_by(alert_events.c.id)
                    .limit(PURGE_CHUNK)
                )
                .scalars()
                .all()
            )
            if not ids:
                return total
            conn.execute(alert_events.delete().where(alert_events.c.id.in_(ids)))
        total += len(ids)


def handle_purge(rt: Any, payloads: list[dict[str, Any]]) -> None:
    """Deadline handler `deadline.events.purge`: purge old events and old done outbox rows,
    then schedule the next purge a day later. Idempotent: a second run finds nothing old
    and moves the same deadline."""
    purge(rt.store, rt.settings.event_retention_days)
    purged = retention.purge_all(rt.store, rt.settings)
    if purged != retention.Purged():
        log.info("purged %s", purged)
    with rt.store.begin() as conn:
        # A guard on the activations' counts of firing alerts (logs what it corrects).
        recount_firing_alerts(conn)
    # Done outbox rows are history only: kept a week for operators, then dropped.
    outbox.purge_done(rt.store, utcnow() - OUTBOX_KEPT)
    with rt.store.begin() as conn:
        deadlines.schedule(conn, PURGE_DEADLINE, PURGE_KEY, utcnow() + PURGE_EVERY)
