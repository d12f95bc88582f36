"""One evaluator per partition in a process: a job for a partition another thread is
evaluating leaves the work to that thread, and nothing it came for is left unevaluated."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

import workers.evaluate as evaluate
from engine.events import EVALUATE, Submission, store_one
from engine.models import AlertEvent, EventStatus
from engine.runtime import Runtime
from engine.sources import find_by_key
from engine.tables import alert_events, outbox, utcnow
from tests import factories


def _deliver(rt: Runtime, key: str) -> None:
    with rt.store.read() as conn:
        [source] = find_by_key(conn, "am", None)
    now = utcnow()
    event = AlertEvent(
        source_type="alertmanager",
        dedup_key=key,
        status=EventStatus.FIRING,
        occurred_at=now,
        received_at=now,
    )
    store_one(rt.store, Submission(source, [event], now))


def _unevaluated(rt: Runtime) -> int:
    with rt.store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(alert_events)
                .where(alert_events.c.evaluated_at.is_(None))
            ).scalar_one()
        )


def _waiting_rows(rt: Runtime) -> list[Any]:
    with rt.store.read() as conn:
        return list(
            conn.execute(
                sa.select(outbox.c.payload).where(
                    outbox.c.kind == EVALUATE, outbox.c.claimed_at.is_(None)
                )
            ).scalars()
        )


@pytest.fixture
def paused(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The runtime with one source, and `evaluate_partition` held at its first call until
    `go` is set (the real one runs then); `passes` counts the calls."""
    with runtime.store.begin() as conn:
        factories.source(conn, factories.team(conn), "am")
    entered, go = threading.Event(), threading.Event()
    passes: list[str] = []
    real = evaluate.evaluate_partition

    def held(*args: Any, **kwargs: Any) -> int:
        passes.append(threading.current_thread().name)
        if len(passes) == 1:
            entered.set()
            assert go.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_partition", held)
    with runtime.store.read() as conn:
        [source] = find_by_key(conn, "am", None)
    return {"entered": entered, "go": go, "passes": passes, "partition": source.partition}


def test_a_second_job_leaves_the_partition_to_the_thread_evaluating_it(
    runtime: Runtime, paused: dict[str, Any]
) -> None:
    _deliver(runtime, "first")
    job = [{"partition": paused["partition"]}]
    first = threading.Thread(target=evaluate.handle_evaluate, args=(runtime, job), name="first")
    first.start()
    assert paused["entered"].wait(10)
    # Committed after the first job's pass began: what the second job is for.
    _deliver(runtime, "second")
    evaluate.handle_evaluate(runtime, job)
    assert paused["passes"] == ["first"]  # the second job evaluated nothing itself
    paused["go"].set()
    first.join(10)
    # The first thread went on for it: one more pass of its own, after the one that was
    # under way (which found both events), before it let the partition go.
    assert paused["passes"] == ["first", "first"]
    assert _unevaluated(runtime) == 0


def test_past_its_budget_the_evaluating_thread_hands_on_what_came_for_the_others(
    runtime: Runtime, paused: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluate, "STREAM_BUDGET", 0.0)
    _deliver(runtime, "first")
    job = [{"partition": paused["partition"]}]
    first = threading.Thread(target=evaluate.handle_evaluate, args=(runtime, job), name="first")
    first.start()
    assert paused["entered"].wait(10)
    _deliver(runtime, "second")
    waiting_before = len(_waiting_rows(runtime))
    evaluate.handle_evaluate(runtime, job)
    paused["go"].set()
    first.join(10)
    # One pass, then the budget: the partition gets an `evaluate` row of its own, so the
    # second job's events do not wait on a job that has ended.
    assert paused["passes"] == ["first"]
    assert _waiting_rows(runtime)[waiting_before:] == [{"partition": paused["partition"]}]
    evaluate.handle_evaluate(runtime, job)
    assert _unevaluated(runtime) == 0
