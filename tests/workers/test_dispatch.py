"""The outbox job runner: one row its handler cannot take fails alone, not its batch."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from engine import outbox
from engine.tables import outbox as outbox_table
from workers import dispatch
from workers.runtime import Runtime, install

HANDLED: list[dict[str, Any]] = []


def picky(_rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """A handler that cannot take a row marked `bad` (a bug, bad data)."""
    if any(p.get("bad") for p in payloads):
        raise ValueError("cannot handle this row")
    HANDLED.extend(payloads)


def test_a_row_its_handler_cannot_take_fails_alone(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(dispatch.HANDLERS, "test.picky", ("beacon-default", f"{__name__}:picky"))
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
