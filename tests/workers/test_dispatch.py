"""The outbox job runner: one row its handler cannot take fails alone, not its batch."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from engine import outbox
from engine.runtime import Runtime, install
from engine.tables import outbox as outbox_table
from workers import dispatch

HANDLED: list[dict[str, Any]] = []


def picky(_rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """A handler that cannot take a row marked `bad` (a bug, bad data)."""
    if any(p.get("bad") for p in payloads):
        raise ValueError("cannot handle this row")
    HANDLED.extend(payloads)


def test_a_row_its_handler_cannot_take_fails_alone(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(runtime.handlers, "test.picky", ("beacon-default", f"{__name__}:picky"))
    HANDLED.clear()
    install(runtime)
    with runtime.store.begin() as conn:
        outbox.emit_many(conn, "test.picky", [{"n": 1}, {"n": 2, "bad": True}, {"n": 3}])
    rows = outbox.claim(runtime.store, "test")
    dispatch.run_outbox([r.id for r in rows])

    assert HANDLED == [{"n": 1}, {"n": 3}]
    with runtime.store.read() as conn:
        stored = conn.execute(
            sa.select(outbox_table.c.payload, outbox_table.c.done_at, outbox_table.c.error)
            .where(outbox_table.c.kind == "test.picky")
            .order_by(outbox_table.c.id)
        ).all()
    assert [(r.payload["n"], r.done_at is not None) for r in stored] == [
        (1, True),
        (2, False),
        (3, True),
    ]
    assert "cannot handle this row" in stored[1].error

    # Given up on after MAX_ATTEMPTS, still alone.
    monkeypatch.setattr(dispatch, "MAX_ATTEMPTS", 1)
    dispatch.run_outbox([r.id for r in rows])
    with runtime.store.read() as conn:
        error = conn.execute(
            sa.select(outbox_table.c.error).where(outbox_table.c.done_at.is_(None))
        ).scalar_one()
    assert error.startswith("gave up:")


def _resting(ticker: dispatch.Ticker, seconds: float) -> Any:
    import threading

    rest = threading.Thread(target=ticker._rest, args=(seconds,), daemon=True)
    rest.start()
    return rest


def test_a_delivery_ends_the_pause_after_follow_up_work_unless_an_evaluation_takes_it(
    runtime: Runtime,
) -> None:
    # After a busy pass the dispatcher pauses (up to `interval`) so that the work of many
    # commits gathers. A webhook arriving behind renders and notifications need not wait
    # for that; under a flood an evaluation is running and takes the new events anyway.
    import time

    assert runtime.settings.embedded
    ticker = dispatch.Ticker(runtime, interval=60, breath=0.01, max_breath=60)
    rest = _resting(ticker, 60)
    runtime.delivery()
    rest.join(5)
    assert not rest.is_alive()

    with runtime.evaluation():
        rest = _resting(ticker, 60)
        runtime.delivery()
        time.sleep(0.2)
        assert rest.is_alive()  # the running evaluation takes what arrived
        ticker.stop(timeout=0)
        rest.join(5)
        assert not rest.is_alive()  # stopping still ends it


def test_in_scaled_mode_a_delivery_does_not_end_the_pause(runtime: Runtime) -> None:
    import dataclasses
    import time

    scaled = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"redis_url": "redis://x"})
    )
    assert not scaled.settings.embedded
    ticker = dispatch.Ticker(scaled, interval=60, breath=0.01, max_breath=60)
    rest = _resting(ticker, 60)
    scaled.delivery()
    time.sleep(0.2)
    assert rest.is_alive()
    ticker.stop(timeout=0)
    rest.join(5)
    assert not rest.is_alive()
