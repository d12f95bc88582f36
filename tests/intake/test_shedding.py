"""The intake sheds load instead of queueing it without end: when the event writer's queue
is full (the store is behind), a delivery is answered 503 with `Retry-After` and nothing is
stored; deliveries with resolves have twice the room; the queued ones are stored once the
store catches up."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

from engine.event_writer import EventWriter, Overloaded
from engine.events import Submission
from engine.models import AlertEvent, EventStatus
from engine.sources import find_by_key
from engine.tables import utcnow
from pages.state import of as pages_state
from tests.intake.conftest import Env, events_in, firing, resolved
from tests.support import wait_for


def test_a_full_queue_sheds_firing_with_503_and_keeps_room_for_resolves(env: Env) -> None:
    writer = EventWriter(env.store, max_pending=1)
    pages_state(env.runtime).event_writer = writer
    # Another writer holds SQLite's lock: the group commit waits, as on a slow disk.
    holder = sqlite3.connect(env.runtime.settings.data_dir / "beacon.db", timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    answers: dict[str, Any] = {}

    def post(name: str, body: Any) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.update({name: env.post(body)}))
        thread.start()
        return thread

    try:
        first = post("first", firing("a1"))
        wait_for(lambda: writer.writing == 1, 10, "the first delivery's commit")
        second = post("second", firing("a2"))
        wait_for(lambda: writer.pending == 1, 10, "the second delivery queued")
        shed = env.post(firing("a3"))
        assert shed.status_code == 503, shed.text
        assert shed.headers["Retry-After"] == "2"
        assert "retry later" in shed.json()["error"]["message"]
        resolve = post("resolve", resolved("a1"))
        wait_for(lambda: writer.pending == 2, 10, "the resolve queued")
    finally:
        holder.rollback()
        holder.close()
    for thread in (first, second, resolve):
        thread.join(30)
    assert {name: a.status_code for name, a in answers.items()} == {
        "first": 202,
        "second": 202,
        "resolve": 202,
    }
    assert writer.stats.shed == 1 and writer.pending == 0 and writer.pending_bytes == 0
    stored = [(e.dedup_key, e.status) for e in events_in(env.runtime.settings.data_dir)]
    assert sorted(stored) == [("a1", "firing"), ("a1", "resolved"), ("a2", "firing")]


def test_the_queue_is_bounded_by_bytes_too(env: Env) -> None:
    with env.store.read() as conn:
        [source] = find_by_key(conn, "tool", None)
    now = utcnow()
    event = AlertEvent(
        source_type="fake-tool",
        dedup_key="big",
        status=EventStatus.FIRING,
        occurred_at=now,
        received_at=now,
    )
    submission = Submission(source, [event], now)
    writer = EventWriter(env.store, max_pending_bytes=1000)

    async def submit() -> None:
        await writer.submit(submission, size=2000)

    try:
        asyncio.run(submit())
    except Overloaded as exc:
        assert "waiting for the store" in str(exc)
    else:
        raise AssertionError("a delivery larger than the byte bound was queued")
