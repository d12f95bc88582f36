"""The outbox and deadline tables hand work over exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from engine import deadlines, outbox
from engine.db import Store
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import outbox as outbox_table
from engine.tables import utcnow
from workers.dispatch import dispatch_once


def test_claim_takes_each_row_once(store: Store) -> None:
    with store.begin() as conn:
        outbox.emit_many(conn, "noop", [{"n": n} for n in range(10)])
    first = outbox.claim(store, "a", limit=6)
    second = outbox.claim(store, "b")
    assert [r.payload["n"] for r in first] == list(range(6))
    assert [r.payload["n"] for r in second] == list(range(6, 10))
    assert outbox.claim(store, "c") == []


def test_a_claim_whose_lease_ran_out_is_taken_over(store: Store) -> None:
    with store.begin() as conn:
        outbox.emit(conn, "noop", {"n": 1})
    (row,) = outbox.claim(store, "dead-dispatcher")
    assert outbox.claim(store, "other") == []
    later = utcnow() + outbox.LEASE + timedelta(seconds=1)
    (again,) = outbox.claim(store, "other", now=later)
    assert again.id == row.id
    assert again.attempts == 2


def test_done_rows_are_never_claimed_again(store: Store) -> None:
    with store.begin() as conn:
        outbox.emit(conn, "noop")
    (row,) = outbox.claim(store, "a")
    assert outbox.mark_done(store, [row.id]) == 1
    assert outbox.mark_done(store, [row.id]) == 0
    assert outbox.claim(store, "b", now=utcnow() + timedelta(hours=1)) == []
    assert outbox.pending_count(store) == 0


def test_a_failed_row_is_retried_after_its_delay(store: Store) -> None:
    with store.begin() as conn:
        outbox.emit(conn, "noop")
    (row,) = outbox.claim(store, "a")
    retry_at = utcnow() + timedelta(seconds=30)
    outbox.mark_failed(store, [row.id], "boom", retry_at)
    assert outbox.claim(store, "b") == []
    (again,) = outbox.claim(store, "b", now=retry_at + timedelta(seconds=1))
    assert again.id == row.id


def test_concurrent_claimers_never_share_a_row(store: Store) -> None:
    with store.begin() as conn:
        outbox.emit_many(conn, "noop", [{"n": n} for n in range(400)])
    claimed: list[list[int]] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while rows := outbox.claim(store, name, limit=7):
            with lock:
                claimed.append([r.id for r in rows])

    threads = [threading.Thread(target=claimer, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for batch in claimed for i in batch]
    assert len(ids) == 400
    assert len(set(ids)) == 400


def test_a_due_deadline_becomes_one_outbox_row(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        deadlines.schedule(
            conn, "maintenance.start", "7", now + timedelta(seconds=5), {"window_id": 7}
        )
    assert deadlines.fire_due(store, now) == 0
    assert deadlines.fire_due(store, now + timedelta(seconds=6)) == 1
    assert deadlines.fire_due(store, now + timedelta(seconds=7)) == 0
    with store.read() as conn:
        rows = conn.execute(sa.select(outbox_table.c.kind, outbox_table.c.payload)).all()
    assert [(r.kind, r.payload["window_id"], r.payload["deadline_key"]) for r in rows] == [
        ("deadline.maintenance.start", 7, "7")
    ]


def test_rescheduling_moves_a_deadline_instead_of_adding_one(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        deadlines.schedule(conn, "k", "a", now + timedelta(seconds=5))
        deadlines.schedule(conn, "k", "a", now + timedelta(seconds=50))
    assert deadlines.fire_due(store, now + timedelta(seconds=10)) == 0
    next_due = deadlines.next_due(store)
    assert next_due is not None
    assert abs((next_due - (now + timedelta(seconds=50))).total_seconds()) < 0.01
    with store.begin() as conn:
        assert deadlines.cancel(conn, "k", "a")
        assert not deadlines.cancel(conn, "k", "a")
    assert deadlines.next_due(store) is None


def test_concurrent_tickers_fire_each_deadline_once(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        for n in range(200):
            deadlines.schedule(conn, "k", str(n), now - timedelta(seconds=1))
    fired: list[int] = []
    lock = threading.Lock()

    def ticker() -> None:
        while count := deadlines.fire_due(store, limit=9):
            with lock:
                fired.append(count)

    threads = [threading.Thread(target=ticker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 200
    assert outbox.pending_count(store) == 200


def test_a_shorter_lease_hands_a_dead_claim_over_sooner(store: Store) -> None:
    lease = timedelta(seconds=10)
    with store.begin() as conn:
        outbox.emit(conn, "noop", {"n": 1})
    (row,) = outbox.claim(store, "dead-dispatcher", lease=lease)
    later = utcnow() + lease + timedelta(seconds=1)
    assert outbox.claim(store, "other", now=later) == []  # the default lease still holds it
    (again,) = outbox.claim(store, "other", now=later, lease=lease)
    assert again.id == row.id


def test_a_failed_row_waits_its_delay_under_any_lease(store: Store) -> None:
    lease = timedelta(seconds=10)
    with store.begin() as conn:
        outbox.emit(conn, "noop")
    (row,) = outbox.claim(store, "a", lease=lease)
    retry_at = utcnow() + timedelta(seconds=30)
    outbox.mark_failed(store, [row.id], "boom", retry_at, lease)
    assert outbox.claim(store, "b", now=retry_at - timedelta(seconds=1), lease=lease) == []
    (again,) = outbox.claim(store, "b", now=retry_at + timedelta(seconds=1), lease=lease)
    assert again.id == row.id


def test_the_dispatcher_takes_a_dead_claim_over_after_the_lease_set(
    tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> None:
    """BEACON_OUTBOX_LEASE_SECONDS: work whose worker died holding it waits that long."""
    for lease, taken in (("", 0), ("5", 1)):
        env = {"BEACON_DATA_DIR": str(tmp_path / f"data{lease}")}
        rt = make_runtime(Settings.from_env(env | {"BEACON_OUTBOX_LEASE_SECONDS": lease}))
        with rt.store.begin() as conn:
            outbox.emit(conn, "noop")
        outbox.claim(rt.store, "dead-worker", now=utcnow() - timedelta(seconds=6))
        assert dispatch_once(rt) == taken, lease


def test_a_claim_of_some_kinds_leaves_the_others_to_another_dispatcher(store: Store) -> None:
    # Embedded mode's store process claims evaluation's kinds, its web process the rest.
    with store.begin() as conn:
        outbox.emit_many(conn, "evaluate", [{"n": 1}, {"n": 2}])
        outbox.emit_many(conn, "noop", [{"n": 3}])
    kinds = frozenset({"evaluate"})
    others = outbox.claim(store, "web", kinds=kinds, others=True)
    mine = outbox.claim(store, "store", kinds=kinds)
    assert [(r.kind, r.payload["n"]) for r in others] == [("noop", 3)]
    assert [(r.kind, r.payload["n"]) for r in mine] == [("evaluate", 1), ("evaluate", 2)]
    assert outbox.claim(store, "third") == []
