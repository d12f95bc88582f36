"""A rule's `matches` runs on RE2: a pattern that backtracks exponentially in Python's `re`
answers at once on a megabyte label, in the evaluator, in `why` and in `rules check`, and
the other alerts of the batch are evaluated as usual."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from engine.tables import alert_events
from rules.errors import RulesInvalid
from rules.explain import holds
from rules.regex import RegexError, compile_pattern
from rules.validate import check
from tests.rules.helpers import KNOWN, event
from tests.rules.store_helpers import evaluate, ingest, load_rules, seed, status_of

#: `(a+)+$` against "aaa...ab": Python's `re` tries 2^n ways before it gives up.
BOMB = "(a+)+$"
HUGE = "a" * 1_000_000 + "b"


def finishes(work, seconds: float = 60) -> None:
    """Runs `work` in a thread and fails if it is still running after `seconds` (a hang
    guard, not a benchmark: with a backtracking engine it would not finish this century)."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the match is still running"


def test_a_backtracking_pattern_on_a_megabyte_label_answers_at_once():
    found: list[bool] = []
    finishes(lambda: found.append(holds(HUGE, "matches", BOMB)))
    assert found == [False]
    assert holds("aaaa", "matches", BOMB)


def test_the_evaluator_matches_a_megabyte_label_and_evaluates_the_rest_of_the_batch(
    sqlite_store,
):
    ids = seed(sqlite_store)
    runtime = load_rules(
        sqlite_store,
        f"""
  - id: bomb
    match: {{source: am, labels.payload: {{matches: "{BOMB}"}}}}
    services: [db]
    then: [{{set_status: major_outage}}]
  - id: plain
    match: {{source: am, labels.alertname: ApiDown}}
    services: [api]
    then: [{{set_status: partial_outage}}]
""",
    )
    ingest(
        sqlite_store,
        ids["am"],
        event(dedup_key="huge", labels={"payload": HUGE}),
        event(dedup_key="next", at=1, labels={"alertname": "ApiDown"}),
    )
    finishes(lambda: evaluate(sqlite_store, runtime))
    with sqlite_store.read() as conn:
        outcomes = dict(
            conn.execute(sa.select(alert_events.c.dedup_key, alert_events.c.outcome)).all()
        )
    assert {k: v["result"] for k, v in outcomes.items()} == {"huge": "no_match", "next": "matched"}
    assert status_of(sqlite_store, ids["db"]) == "operational"
    assert status_of(sqlite_store, ids["api"]) == "partial_outage"


def test_a_pattern_that_needs_backtracking_is_refused_when_checked_with_the_reason():
    text = """version: 1
rules:
  - id: look
    match:
      summary: {matches: "^(?!maintenance).*down"}
    services: [api]
    then: [{set_status: degraded}]
"""
    with pytest.raises(RulesInvalid) as info:
        check({"rules/look.yaml": text}, KNOWN)
    found = [str(p) for p in info.value.problems]
    assert any("rules/look.yaml:5:" in p and "lookarounds or backreferences" in p for p in found), (
        found
    )
    with pytest.raises(RegexError, match="backreferences"):
        compile_pattern(r"(x)\1")
