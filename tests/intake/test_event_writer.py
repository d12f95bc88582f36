"""The group-commit writer: concurrent submissions, retries racing their originals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from engine.db import Store
from engine.event_writer import EventWriter
from engine.events import Submission, prepared
from engine.models import AlertEvent, EventStatus
from engine.sources import find_by_key
from engine.tables import alert_events, outbox, utcnow
from tests.intake.conftest import add_source, add_team


def submissions(store: Store, count: int) -> list[Submission]:
    team = add_team(store, "platform")
    add_source(store, team, "tool")
    with store.read() as conn:
        [source] = find_by_key(conn, "tool", None)
    now = utcnow()
    made = []
    for n in range(count):
        # Every alert twice: a tool's retry arriving while the original is being stored.
        event = AlertEvent(
            source_type="fake-tool",
            dedup_key=f"alert-{n // 2}",
            status=EventStatus.FIRING,
            occurred_at=now,
            received_at=now,
        )
        made.append(Submission(source, [event], now))
    return made


@pytest.mark.parametrize("writers", [1, 4])
def test_concurrent_submissions_are_each_stored_once(store: Store, writers: int) -> None:
    subs = submissions(store, 60)
    writer = EventWriter(store, writers=writers if store.is_postgres else 1)

    async def submit_all() -> list[list[int]]:
        answers = await asyncio.gather(*(writer.submit(s) for s in subs))
        return [[place.id for place in answer] for answer in answers]

    ids = asyncio.run(submit_all())
    assert all(ids[n] == ids[n + 1] for n in range(0, 60, 2))
    with store.read() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(alert_events)).scalar()
        pending = conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.kind == "evaluate")
        ).scalar()
    assert stored == 30
    assert pending is not None and pending >= 1
    assert writer.stats.submissions == 60


@pytest.mark.parametrize("made", ["in the request", "in the transaction"])
def test_every_column_reads_back_as_the_adapter_made_it(store: Store, made: str) -> None:
    # The insert goes straight through the driver on both databases (one multi-row VALUES
    # on SQLite, one `unnest` on PostgreSQL): what SQLAlchemy reads back must be the event,
    # whether the intake made the rows before the batch (`prepared`) or the batch made them.
    [sub] = submissions(store, 1)
    at = utcnow()
    event = AlertEvent(
        source_type="fake-tool",
        dedup_key="k-ü",
        status=EventStatus.RESOLVED,
        severity="warning",
        summary="disk 'full' – ünïcode",
        details="line one\nline two",
        labels={"team": "db", "annotation.runbook": "https://x/y?z=1"},
        links=["https://x/graph"],
        occurred_at=at,
        received_at=at,
        raw={"nested": {"list": [1, 2.5, None, True]}, "text": "ü"},
    )
    test_event = AlertEvent(
        source_type="fake-tool",
        dedup_key="ping",
        status=EventStatus.FIRING,
        occurred_at=at,
        received_at=at,
        test=True,
    )
    writer = EventWriter(store)
    submission = Submission(sub.source, [event, test_event], at)
    if made == "in the request":
        submission = prepared(submission, sqlite=not store.is_postgres)
    asyncio.run(writer.submit(submission))
    with store.read() as conn:
        rows = conn.execute(sa.select(alert_events).order_by(alert_events.c.id)).all()
    first, second = rows
    assert (first.dedup_key, first.status, first.severity) == ("k-ü", "resolved", "warning")
    assert (first.summary, first.details) == (event.summary, event.details)
    assert first.labels == event.labels and first.links == ["https://x/graph"]
    assert first.raw == {"nested": {"list": [1, 2.5, None, True]}, "text": "ü"}
    assert first.occurred_at == at and first.received_at == at
    assert first.test is False and first.evaluated_at is None and first.outcome is None
    assert first.partition == sub.source.partition and len(first.fingerprint) == 64
    assert second.test is True and second.evaluated_at == at
    assert second.outcome["result"] == "test" and second.raw is None


def test_times_before_year_1000_sort_and_read_back_as_sqlalchemy_writes_them(
    store: Store,
) -> None:
    # A generic source can map any time, Go's zero time (year 1) included. On SQLite times
    # are text: the intake's must be SQLAlchemy's zero-padded form, or they sort wrongly.
    [sub] = submissions(store, 1)
    at = utcnow()
    old = datetime(1, 1, 1, tzinfo=UTC)
    event = AlertEvent(
        source_type="fake-tool",
        dedup_key="zero",
        status=EventStatus.FIRING,
        occurred_at=old,
        received_at=at,
    )
    asyncio.run(EventWriter(store).submit(Submission(sub.source, [event], at)))
    with store.read() as conn:
        row = conn.execute(sa.select(alert_events.c.occurred_at)).one()
        earlier = conn.execute(
            sa.select(sa.func.count())
            .select_from(alert_events)
            .where(alert_events.c.occurred_at < datetime(999, 1, 1, tzinfo=UTC))
        ).scalar()
    assert row.occurred_at == old
    assert earlier == 1
