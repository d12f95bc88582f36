"""The evaluation job: a partition's new events through the rules, in order, in batches.

Contract with the intake (see also `engine.activations`): events are stored in
`alert_events` with `partition` (the alert source's id and key, `"<source id>:<key>"` or
any stable string per source) and `evaluated_at` null, and an outbox row `evaluate` with
`{"partition": ...}` is emitted in the same transaction. The dispatcher hands every claimed
`evaluate` row of a pass to one `handle_evaluate` call, which evaluates each distinct
partition once -- batches of events, never one job per event.

Order and exclusivity: a partition's events are taken in id order, up to `BATCH` per
transaction; on PostgreSQL the transaction first takes an advisory lock on the partition,
so one evaluator at a time works on it (SQLite's writer lock does the same). The batch,
its effects (activations, claims, incidents, deadlines, outbox rows) and the events'
`evaluated_at` and `outcome` commit together: an evaluator killed mid-batch leaves every
event of the batch unevaluated, and the outbox row's lease expiring hands the partition to
another evaluator. Deadlines (`deadline.rules.tick`) run the machine's clock the same way.

Rules come from the `rule_sets` table: the newest active version is compiled once per
process and swapped in between batches (`rules.runtime.RuleRuntime`); one batch uses one
version throughout.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import namedtuple
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from rq.timeouts import BaseTimeoutException
from sqlalchemy.exc import DBAPIError

from engine import deadlines, outbox, rulesets
from engine.activations import Activation, Machine
from engine.activations.apply import apply_intents
from engine.activations.lookups import Ids, StoreWorld, event_from_row
from engine.activations.store import TICK, StoreState
from engine.db import Store, json_text, sqlite_time
from engine.events import EVALUATE, TEST_OUTCOME
from engine.models import EventStatus
from engine.runtime import Runtime
from engine.sandbox import DEFAULT_LIMITS, Limits
from engine.tables import (
    activations,
    alert_events,
    alert_sources,
    held_alerts,
    maintenance_windows,
    rule_sets,
    utcnow,
)
from rules.runtime import RuleBook, RuleRuntime
from rules.validate import Known, check, stored_spec

#: Most events evaluated in one transaction, and the least fetched after a slow one.
BATCH = 500
MIN_BATCH = 20
#: About how long one evaluation transaction may work (see `evaluate_partition`).
BATCH_SECONDS = 0.025
#: Under a stream of events (see `evaluate_partition`) a partition's batches start at most
#: this often on SQLite, and its evaluation gives the job back after `STREAM_BUDGET`.
STREAM_INTERVAL = 0.05
STREAM_EVENTS = 20
STREAM_BUDGET = 1.0
#: A job that works through a backlog (batches that never catch up: deliveries arrive
#: faster than they are evaluated) gives itself back after this long, with an `evaluate`
#: row for the rest. Without it the job ran until the backlog was gone: past RQ's job
#: timeout (300 s) RQ killed it mid-batch, and the claim's lease was waited out before
#: the next try (bench/soak.py on a saturated machine, docs/operations.md "The soak").
BACKLOG_BUDGET = 30.0
#: Failures that are not the event's or the activation's: the store's, the job running out
#: of time (RQ raises its timeout into the running code), memory. They fail the job, which
#: the outbox retries; nothing is set aside for them.
NOT_THE_ITEMS = (DBAPIError, BaseTimeoutException, MemoryError)

log = logging.getLogger(__name__)


# --- rule set versions ----------------------------------------------------------------------


def publish_rules(store: Store, files: Mapping[str, str], known: Known | None) -> int:
    """Validate `files` and make them the rules in force; returns the new version (the same
    version when the text is unchanged). Raises `rules.errors.RulesInvalid` and changes
    nothing if any file has a problem."""
    spec = check(files, known)
    with store.begin() as conn:
        current = conn.execute(
            sa.select(rule_sets.c.version, rule_sets.c.digest)
            .where(rule_sets.c.active.is_(True))
            .order_by(rule_sets.c.version.desc())
            .limit(1)
        ).first()
        if current is not None and current.digest == spec.digest:
            return int(current.version)
        version = int(conn.execute(sa.select(sa.func.max(rule_sets.c.version))).scalar() or 0) + 1
        conn.execute(
            rule_sets.insert().values(
                version=version, files=dict(files), digest=spec.digest, active=True
            )
        )
    return version


def rules_runtime(store: Store, runtime: RuleRuntime | None = None) -> RuleRuntime:
    """`runtime` (a new one when None) brought up to the version in force in the store;
    jobs pass their process's (`Runtime.part(RuleRuntime)`)."""
    if runtime is None:
        runtime = RuleRuntime()
    with store.read() as conn:
        version = rulesets.version_in_force(conn)
        book = runtime.book
        if book is not None and book.version == version:
            return runtime
        found = rulesets.stored(conn, version)
        spec = stored_spec(found.files, found.owners)
    runtime.swap(spec, version)
    return runtime


# --- evaluation -----------------------------------------------------------------------------


def _lock(conn: sa.Connection, name: str) -> None:
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(name.encode()) - 2**31
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _machine(
    conn: sa.Connection, book: RuleBook, limits: Limits, *, only_held: int | None = None
) -> tuple[Ids, Machine]:
    """The machine on the store for one transaction (`only_held`: see `StoreState`;
    `limits`: the incident templates' render limits)."""
    ids = Ids(conn)
    policies = {rule_id: located.rule for rule_id, located in book.rules.items()}
    state = StoreState(ids, only_held=only_held)
    return ids, Machine(state, StoreWorld(ids), policies, limits)


class _Clock:
    """Which activation the clock is working on (`Machine.on_time`'s `watch`): the machine
    takes the first one due, runs it, and asks again."""

    current: int | None = None

    def watch(self, act: Activation | None) -> None:
        # None while the store reads what is due: an error there is nobody's in particular.
        self.current = act.id if act is not None else None


def evaluate_partition(
    store: Store,
    runtime: RuleRuntime,
    partition: str,
    limits: Limits = DEFAULT_LIMITS,
    backlog_budget: float | None = None,
) -> int:
    """Evaluate every unevaluated event of `partition`, in id order, in transactions of at
    most `BATCH` events and about `BATCH_SECONDS` of work; returns how many were evaluated.
    Incident templates render within `limits` (`Settings.template_limits`); jobs pass
    `BACKLOG_BUDGET` as `backlog_budget`.

    The time bound matters on SQLite: a transaction holds the one write lock, which the
    intake's group commit waits for, so a long batch would be every webhook's latency.

    A stream: a batch that caught up found `STREAM_EVENTS` or more new events when it had
    caught up before, so they arrived while it ran. Under a steady stream the evaluator
    would then run one small transaction after every intake commit, each with its fixed
    cost and, on SQLite, each one more transaction the next group commit queues behind.
    So on SQLite the next batch starts `STREAM_INTERVAL` after the last one did, with what
    arrived meanwhile. A burst, a lone event and a backlog are evaluated without pause.

    After `STREAM_BUDGET` seconds of a stream the job is given back, so the job's other
    partitions get their turn: the events that arrived since this job's `evaluate` row was
    claimed came with a row of their own, which another job takes. A backlog is given back
    after `backlog_budget` seconds, if given, with a row of its own, since the events still
    pending may all have come before this job's row was claimed.
    """
    total = 0
    limit = BATCH
    began = started = time.monotonic()
    caught_up_before = False
    while True:
        try:
            evaluated, limit, caught_up = _evaluate_batch(store, runtime, partition, limit, limits)
        except _EventFailed as failed:
            if limit > 1:
                # Once more with the event alone in its transaction: the events before it
                # pass, and a failure that does not come back was not the event's.
                limit = 1
                continue
            _set_aside(store, partition, failed.event_id)
            continue
        if evaluated == 0:
            return total
        total += evaluated
        if (
            backlog_budget is not None
            and not caught_up
            and time.monotonic() - began >= backlog_budget
        ):
            with store.begin() as conn:
                outbox.emit(conn, EVALUATE, {"partition": partition})
            return total
        if caught_up and caught_up_before and evaluated >= STREAM_EVENTS:
            now = time.monotonic()
            if now - began >= STREAM_BUDGET:
                return total
            if not store.is_postgres and now < started + STREAM_INTERVAL:
                time.sleep(started + STREAM_INTERVAL - now)
        caught_up_before = caught_up
        started = time.monotonic()


class _EventFailed(Exception):
    """Evaluating one event raised (not the store: its errors go to the job's retries)."""

    def __init__(self, event_id: int) -> None:
        super().__init__(event_id)
        self.event_id = event_id


def _evaluate_batch(
    store: Store, runtime: RuleRuntime, partition: str, limit: int, limits: Limits
) -> tuple[int, int, bool]:
    """One transaction of `evaluate_partition`: how many events it evaluated (0: none were
    pending), the batch size for the next one, and whether it evaluated every event that
    was pending."""
    with runtime.using() as book, store.begin() as conn:
        _lock(conn, f"evaluate:{partition}")
        try:
            rows: list[Any] = [
                _PendingRow._make(row)
                for row in conn.execute(_PENDING, {"partition": partition, "limit": limit})
            ]
        except NOT_THE_ITEMS:
            raise
        except Exception as exc:
            # A row that cannot be read back: set aside like an event that fails.
            first = conn.execute(_FIRST_PENDING, {"partition": partition}).scalar_one()
            raise _EventFailed(first) from exc
        if not rows:
            return 0, limit, True
        # Fewer rows than asked for: these were all that were pending.
        caught_up = len(rows) < limit
        ids, machine = _machine(conn, book, limits)
        outcomes: list[dict[str, Any]] = []
        started = time.perf_counter()
        for row in rows:
            if outcomes and time.perf_counter() - started > BATCH_SECONDS:
                # The rest stay unevaluated for the next transaction, which fetches about
                # as many as fitted in this one.
                limit = max(MIN_BATCH, len(outcomes))
                break
            try:
                outcome = _evaluate_one(conn, book, ids, machine, row)
            except NOT_THE_ITEMS:
                raise
            except Exception as exc:
                raise _EventFailed(row.id) from exc
            outcomes.append({"event_id": row.id, "at": utcnow(), "outcome": outcome})
        else:
            limit = min(BATCH, limit * 2)
        # One statement for the batch's outcomes: they commit with its effects.
        _record_outcomes(conn, outcomes)
        return len(outcomes), limit, caught_up and len(outcomes) == len(rows)


def _record_outcomes(conn: sa.Connection, outcomes: list[dict[str, Any]]) -> None:
    """`_RECORD_OUTCOME` for each of `outcomes`; on SQLite through the driver (the same
    text for the time and the JSON), as the intake's insert: SQLAlchemy's processing of
    each row's parameters cost more than the update itself."""
    if conn.dialect.name != "sqlite":
        conn.execute(_RECORD_OUTCOME, outcomes)
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(
            _RECORD_OUTCOME_SQLITE,
            [(sqlite_time(o["at"]), json_text(o["outcome"]), o["event_id"]) for o in outcomes],
        )
    finally:
        cursor.close()


def _evaluate_one(
    conn: sa.Connection, book: RuleBook, ids: Ids, machine: Machine, row: Any
) -> dict[str, Any]:
    """One event through the rules and the machine, its intents applied; its outcome."""
    event = event_from_row(row, ids)
    outcome: dict[str, Any] = {"rules_version": book.version}
    if event.test:
        outcome.update(TEST_OUTCOME)
        return outcome
    team = ids.team_key(row.team_id)
    matched = book.match(event, team) if event.status == EventStatus.FIRING else []
    intents, result = machine.on_event(event, [m.rule for m in matched], team)
    apply_intents(conn, ids, intents)
    outcome.update(result.to_json())
    return outcome


def _set_aside(store: Store, partition: str, event_id: int) -> None:
    """Mark an event that failed alone in its transaction (a bug, or a row that cannot be
    read back) evaluated, with an `error` outcome.

    Its effects were rolled back. Left pending, it would fail every later evaluation of its
    partition, and the source's other alerts would never reach the rules again; set aside,
    it is logged, shown by the events API and `beacon events tail` as `error`, and the
    partition goes on.
    """
    log.exception("evaluating event %d failed; it is set aside with an error outcome", event_id)
    outcome = {
        "result": "error",
        "matched": [],
        "effects": [],
        "error": "this event could not be evaluated (details are in Beacon's log); "
        "it changed nothing",
    }
    with store.begin() as conn:
        # Under the partition's lock, and only if still pending: another evaluator may have
        # evaluated it since (a failure that did not come back there).
        _lock(conn, f"evaluate:{partition}")
        conn.execute(
            _RECORD_OUTCOME.where(alert_events.c.evaluated_at.is_(None)),
            [{"event_id": event_id, "at": utcnow(), "outcome": outcome}],
        )


# What evaluation reads of an event (not the tool's `raw` payload, the largest column).
_PENDING = (
    sa.select(
        alert_events.c.id,
        alert_events.c.source_id,
        alert_events.c.dedup_key,
        alert_events.c.status,
        alert_events.c.severity,
        alert_events.c.summary,
        alert_events.c.details,
        alert_events.c.labels,
        alert_events.c.links,
        alert_events.c.occurred_at,
        alert_events.c.received_at,
        alert_events.c.test,
        alert_sources.c.team_id.label("team_id"),
    )
    .join(alert_sources, alert_sources.c.id == alert_events.c.source_id)
    .where(alert_events.c.partition == sa.bindparam("partition"))
    .where(alert_events.c.evaluated_at.is_(None))
    .order_by(alert_events.c.id)
    .limit(sa.bindparam("limit"))
)

#: A pending event's row as a plain named tuple: evaluation reads each field of every event
#: at least once, and a SQLAlchemy row's attributes cost ten times a tuple's.
_PendingRow = namedtuple("_PendingRow", list(_PENDING.selected_columns.keys()))  # type: ignore[misc]

_FIRST_PENDING = (
    sa.select(sa.func.min(alert_events.c.id))
    .where(alert_events.c.partition == sa.bindparam("partition"))
    .where(alert_events.c.evaluated_at.is_(None))
)

_RECORD_OUTCOME = (
    alert_events.update()
    .where(alert_events.c.id == sa.bindparam("event_id"))
    .values(evaluated_at=sa.bindparam("at"), outcome=sa.bindparam("outcome"))
)
_RECORD_OUTCOME_SQLITE = "UPDATE alert_events SET evaluated_at = ?, outcome = ? WHERE id = ?"


def tick(
    store: Store,
    runtime: RuleRuntime,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> int:
    """Run the machine's clock to `now` (activations due: `for`, windows, damping,
    timeouts); returns how many intents it applied."""
    now = now or utcnow()
    while True:
        clock = _Clock()
        try:
            with runtime.using() as book, store.begin() as conn:
                _lock(conn, "rules-tick")
                ids, machine = _machine(conn, book, limits)
                intents = machine.on_time(now, clock.watch)
                for intent in intents:
                    # An intent that fails is its activation's too.
                    clock.current = intent.activation_id
                    apply_intents(conn, ids, [intent])
            return len(intents)
        except NOT_THE_ITEMS:
            raise
        except Exception:
            if clock.current is None:
                raise
            _stop_clock(store, clock.current)


def _stop_clock(store: Store, activation_id: int) -> None:
    """Take an activation whose clock step raised off the clock, with the error on its row:
    left due, it would fail every later tick, and no other activation's `for`, window or
    timeout would run again. Events for its alerts still reach it."""
    log.exception("the clock failed on activation %d; it is taken off the clock", activation_id)
    with store.begin() as conn:
        conn.execute(
            activations.update()
            .where(activations.c.id == activation_id)
            .values(due_at=None, error="its timer could not be run (details are in the log)")
        )
        deadlines.cancel(conn, TICK, f"activation:{activation_id}")


def end_maintenance(
    store: Store, runtime: RuleRuntime, window_id: int, limits: Limits = DEFAULT_LIMITS
) -> int:
    """At a maintenance window's end: replay its held alerts that are still firing (or
    drop them, per its `on_end`); returns how many intents it applied.

    All in one transaction; when that raises (not the store), each held alert is replayed
    in a transaction of its own, and one that fails alone is released unreplayed and
    logged: otherwise it would fail every retry, and the window's other alerts, still
    firing, would never reach their services."""
    try:
        return _end_maintenance(store, runtime, window_id, None, limits)
    except NOT_THE_ITEMS:
        raise
    except Exception:
        log.warning(
            "replaying maintenance window %d failed; replaying its alerts one at a time",
            window_id,
            exc_info=True,
        )
    with store.read() as conn:
        held = (
            conn.execute(
                sa.select(held_alerts.c.id)
                .where(held_alerts.c.window_id == window_id, held_alerts.c.released_at.is_(None))
                .order_by(held_alerts.c.id)
            )
            .scalars()
            .all()
        )
    applied = 0
    for held_id in held:
        try:
            applied += _end_maintenance(store, runtime, window_id, held_id, limits)
        except NOT_THE_ITEMS:
            raise
        except Exception:
            log.exception(
                "replaying held alert %d of maintenance window %d failed; it is released "
                "without a replay",
                held_id,
                window_id,
            )
            with store.begin() as conn:
                conn.execute(
                    held_alerts.update()
                    .where(held_alerts.c.id == held_id, held_alerts.c.released_at.is_(None))
                    .values(released_at=sa.func.now())
                )
    return applied


def _end_maintenance(
    store: Store, runtime: RuleRuntime, window_id: int, held_id: int | None, limits: Limits
) -> int:
    with runtime.using() as book, store.begin() as conn:
        window = conn.execute(
            sa.select(maintenance_windows).where(maintenance_windows.c.id == window_id)
        ).first()
        if window is None:
            return 0
        ids, machine = _machine(conn, book, limits, only_held=held_id)

        team = ids.team_key(window.team_id)

        def matches(event: Any) -> list[Any]:
            return [m.rule for m in book.match(event, team)]

        intents = machine.end_maintenance(
            str(window_id), window.on_end, window.ends_at, matches, team
        )
        apply_intents(conn, ids, intents)
    return len(intents)


# --- outbox handlers (workers.dispatch.HANDLERS) ----------------------------------------------


def handle_evaluate(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Outbox `evaluate`: evaluate each distinct partition of the batch once."""
    runtime = rules_runtime(rt.store, rt.part(RuleRuntime))
    with rt.evaluation():
        for partition in sorted({str(p["partition"]) for p in payloads if "partition" in p}):
            _evaluate_alone(rt, runtime, partition)


@dataclass
class _Turns:
    """The partitions a thread of this process is evaluating, each with whether a job for
    it arrived meanwhile (`_evaluate_alone`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    more: dict[str, bool] = field(default_factory=dict)


def _evaluate_alone(rt: Runtime, runtime: RuleRuntime, partition: str) -> None:
    """`evaluate_partition`, by one thread of this process at a time.

    Under a stream, the commit after a job's `evaluate` row was claimed adds another row,
    whose job another worker thread takes at once: the two would evaluate the partition in
    turns, each in smaller transactions, and evaluation's cost per event grows as they
    shrink (26 µs at 500 events a transaction, 31 at 150, 67 at 25). So a job for a
    partition that another thread here is evaluating leaves the work to that thread, which
    goes on until a pass finds nothing more. Past `STREAM_BUDGET` that thread gives its job
    back (as `evaluate_partition` does), and what the jobs it stood in for came for gets an
    `evaluate` row of its own: nothing waits on a job that has ended. A job that fails is
    retried by the outbox, and its retry evaluates every pending event of the partition."""
    turns = rt.part(_Turns)
    with turns.lock:
        if partition in turns.more:
            turns.more[partition] = True
            return
        turns.more[partition] = False
    began = time.monotonic()
    try:
        while True:
            evaluate_partition(
                rt.store, runtime, partition, rt.settings.template_limits, BACKLOG_BUDGET
            )
            with turns.lock:
                if not turns.more[partition]:
                    del turns.more[partition]
                    return
                turns.more[partition] = False
                if time.monotonic() - began < STREAM_BUDGET:
                    continue
                del turns.more[partition]
            with rt.store.begin() as conn:
                outbox.emit(conn, EVALUATE, {"partition": partition})
            return
    except BaseException:
        with turns.lock:
            turns.more.pop(partition, None)
        raise


def handle_rules_changed(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Outbox `rules.changed` (`beacon apply` stored a new rule set): compile it now, so
    the next event does not wait for it. Only the worker that runs this job compiles it
    here; every process's evaluate and tick jobs load the version in force anyway."""
    rules_runtime(rt.store, rt.part(RuleRuntime))


def handle_tick(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Outbox `deadline.rules.tick`: an activation needs the clock."""
    tick(rt.store, rules_runtime(rt.store, rt.part(RuleRuntime)), None, rt.settings.template_limits)


def handle_maintenance_ended(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Outbox `maintenance.ended` with `{"window_id": ...}`."""
    runtime = rules_runtime(rt.store, rt.part(RuleRuntime))
    for window_id in sorted({int(p["window_id"]) for p in payloads if "window_id" in p}):
        end_maintenance(rt.store, runtime, window_id, rt.settings.template_limits)
