"""What the activation state keeps, the same on both of its states.

The machine's semantics are scenarios (`tests/rules/scenarios/`, run on the in-memory
replay and on the store by `test_scenarios.py`); what is here concerns the `State`
interface itself, where a scenario cannot reach: a replay's world names each source key
once, so two teams' sources of the same key meet only on a state driven directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from engine.activations import MemoryState, State
from engine.activations.lookups import Ids
from engine.activations.store import StoreState
from engine.db import Store
from engine.models import EventStatus
from tests import factories
from tests.rules.helpers import T0, event
from tests.rules.store_helpers import ingest


@contextmanager
def state_on(backend: str, request: pytest.FixtureRequest) -> Iterator[tuple[State, Any]]:
    """Two teams, `a` and `b`, each with an alert source `am`, and a window `w` of team a;
    the state, and the held event and window to use with it."""
    alarm = event("firing", dedup_key="x", at=60)
    if backend == "memory":
        yield MemoryState(), (alarm.with_ids(id="e1", source="am"), "w")
        return
    store: Store = request.getfixturevalue("pg_store" if backend == "postgres" else "sqlite_store")
    with store.begin() as conn:
        teams = {key: factories.team(conn, key) for key in ("a", "b")}
        sources = {key: factories.source(conn, team_id, "am") for key, team_id in teams.items()}
        window = factories.maintenance(
            conn,
            teams["a"],
            "w",
            key="w",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=1),
            service_ids=[],
            status="in_progress",
        )
    (stored,) = ingest(store, sources["a"], alarm)
    with store.begin() as conn:
        yield StoreState(Ids(conn)), (alarm.with_ids(id=str(stored), source="am"), str(window))


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
def test_an_alerts_status_is_its_teams_alone(backend: str, request: pytest.FixtureRequest):
    # Memory once keyed statuses by source and dedup key only: team a's resolve made team
    # b's older firing of its own `am` source "a late firing", and ignored it.
    resolve = event("resolved", dedup_key="x", at=60, occurred=50)
    with state_on(backend, request) as (state, _held):
        state.note_status("a", resolve)
        assert state.last_status("b", "am", "x") is None
        assert state.last_status("a", "am", "x") == (
            EventStatus.RESOLVED,
            T0 + timedelta(seconds=50),
        )


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"])
def test_an_alert_held_by_maintenance_is_its_teams_alone(
    backend: str, request: pytest.FixtureRequest
):
    with state_on(backend, request) as (state, (alarm, window)):
        state.hold("a", window, alarm, "db")
        assert state.held_in("b", "am", "x") is None
        assert state.held_in("a", "am", "x") == window
        assert [(e.dedup_key, rule) for e, rule in state.take_held(window)] == [("x", "db")]
        assert state.held_in("a", "am", "x") is None
