"""`rules.explain`: why no rule matched, held to the engine that decides."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.explain import MAX_EXPLAINED, explain, first_miss
from rules.runtime import RuleBook
from rules.validate import check
from tests.rules.helpers import event

# Small vocabularies, so that random rules and random events often meet.
VALUES = [
    "Fire",
    "Quiet",
    "1",
    "2.5",
    "250",
    "-3",
    "1e3",
    "+Inf",
    "-inf",
    "NaN",
    "1e400",
    "abc",
    "",
    "critical",
]
PATHS = ["labels.alertname", "labels.p99", "labels.team", "dedup_key", "source", "summary"]
SEVERITIES = ["critical", "high", "warning", "info"]
SOURCES = ["am", "kuma"]
NUMBERS = [0, 1, 2.5, 250, -3, 1000]


def _condition() -> st.SearchStrategy[Any]:
    text = st.sampled_from(VALUES)
    return st.one_of(
        text,
        st.fixed_dictionaries({"ne": text}),
        st.fixed_dictionaries({"in": st.lists(text, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not_in": st.lists(text, min_size=1, max_size=3)}),
        st.sampled_from(["gt", "gte", "lt", "lte"]).flatmap(
            lambda op: st.fixed_dictionaries({op: st.sampled_from(NUMBERS)})
        ),
        st.sampled_from(["startswith", "endswith", "contains"]).flatmap(
            lambda op: st.fixed_dictionaries({op: text})
        ),
        st.fixed_dictionaries({"matches": st.sampled_from(["^F", "e$", "[0-9]", "^$", "."])}),
        st.fixed_dictionaries({"exists": st.booleans()}),
        # Two operators on one field: both must hold.
        st.fixed_dictionaries({"gte": st.sampled_from(NUMBERS), "lt": st.sampled_from(NUMBERS)}),
    )


def _rule(n: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(PATHS), _condition(), max_size=3).map(
        lambda match: {
            "id": f"r{n}",
            "match": match,
            "services": ["api"],
            "continue": True,
            "then": [{"set_status": "degraded"}],
        }
    )


rule_lists = st.integers(1, 12).flatmap(lambda n: st.tuples(*[_rule(i) for i in range(n)]))
events = st.builds(
    lambda labels, severity, source, summary, key: event(
        labels=labels, severity=severity, source=source, summary=summary, dedup_key=key or "k"
    ),
    labels=st.dictionaries(
        st.sampled_from(["alertname", "p99", "team"]), st.sampled_from(VALUES), max_size=3
    ),
    severity=st.sampled_from(SEVERITIES),
    source=st.sampled_from(SOURCES),
    summary=st.sampled_from(VALUES),
    key=st.sampled_from(VALUES),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_lists, batch=st.lists(events, min_size=1, max_size=15))
def test_a_rule_has_no_miss_exactly_when_the_engine_matches_it(
    rules: tuple[dict[str, Any], ...], batch: list[Any]
) -> None:
    # Every rule says `continue`, so the engine returns every rule that matches, in order.
    text = json.dumps({"version": 1, "rules": list(rules)})
    book = RuleBook(check({"r.yaml": text}, None), 1)
    try:
        for ev in batch:
            engine = [r.rule.id for r in book.match(ev)]
            explained = [r.rule.id for r in book.spec.rules if first_miss(r, ev) is None]
            assert engine == explained, (ev.labels, ev.severity, ev.source, ev.summary)
    finally:
        book.close()


def book_of(text: str) -> RuleBook:
    return RuleBook(check({"rules/api.yaml": "version: 1\nrules:\n" + text}, None), 1)


RULES = """
  - id: fire
    match: {source: am, labels.alertname: Fire, severity: critical}
    services: [api]
    then: [{set_status: major_outage}]
  - id: slow
    match: {source: am, labels.p99: {gt: 250}}
    services: [api]
    then: [{set_status: degraded}]
  - id: kuma-down
    match: {source: kuma}
    services: [api]
    then: [{set_status: major_outage}]
  - id: any-team
    match: {labels.team: {in: [core, edge]}}
    services: [api]
    then: [{set_status: degraded}]
"""


def test_it_names_each_rules_first_condition_that_does_not_hold() -> None:
    book = book_of(RULES)
    why = explain(book.spec.rules, event(labels={"alertname": "Quiet", "p99": "120"}))
    assert why.rules == [
        ("fire", "rules/api.yaml:4", 'labels.alertname is "Quiet", the rule wants "Fire"'),
        ("slow", "rules/api.yaml:8", 'labels.p99 is "120", the rule wants gt 250'),
        (
            "any-team",
            "rules/api.yaml:16",
            'labels.team is absent, the rule wants in ["core", "edge"]',
        ),
    ]
    # The kuma rule names another source: it could never have matched, so it is only counted.
    assert (why.more, why.other_sources) == (0, 1)
    assert (
        why.lines()[0]
        == 'fire (rules/api.yaml:4): labels.alertname is "Quiet", the rule wants "Fire"'
    )
    book.close()


def test_an_event_of_a_source_no_rule_names_says_so() -> None:
    book = book_of(RULES.split("  - id: any-team")[0])
    why = explain(book.spec.rules, event(source="pingdom"))
    assert why.rules == [] and why.other_sources == 3
    assert why.lines() == ["no rule is for this source: the 3 in force name others"]
    assert explain((), event()).lines() == ["no rules are in force (rules version 0)"]
    book.close()


def test_it_explains_a_few_rules_and_counts_the_rest() -> None:
    many = "".join(
        f"""
  - id: r{n}
    match: {{source: am, labels.n: "{n}"}}
    services: [api]
    then: [{{set_status: degraded}}]
"""
        for n in range(MAX_EXPLAINED + 3)
    )
    book = book_of(many)
    why = explain(book.spec.rules, event(labels={"n": "x"}))
    assert [r[0] for r in why.rules] == [f"r{n}" for n in range(MAX_EXPLAINED)]
    assert why.more == 3 and why.lines()[-1] == "... and 3 more rules for this source"
    book.close()
