from __future__ import annotations

import gc
import random
import re
import resource
import threading

import pytest

from rules.compiler import as_text, event_value
from rules.errors import RulesError
from rules.runtime import ENGINE, RuleBook, RuleRuntime
from rules.validate import check
from tests.rules.helpers import event


def book_of(text: str, version: int = 1) -> RuleBook:
    return RuleBook(check({"r.yaml": "version: 1\nrules:\n" + text}, None), version)


def ids(book: RuleBook, ev) -> list[str]:
    return [r.rule.id for r in book.match(ev)]


ORDERED = """
  - id: first
    match: {labels.team: core}
    services: [api]
    continue: true
    then: [{set_status: degraded}]
  - id: second
    match: {severity: critical}
    services: [api]
    then: [{set_status: major_outage}]
  - id: third
    match: {}
    services: [api]
    then: [{set_status: partial_outage}]
"""


def test_the_first_matching_rule_acts_and_later_ones_only_after_continue():
    book = book_of(ORDERED)
    assert ids(book, event(labels={"team": "core"})) == ["first", "second"]
    assert ids(book, event(labels={"team": "core"}, severity="warning")) == ["first", "third"]
    assert ids(book, event(severity="warning")) == ["third"]


def test_matches_is_a_python_regular_expression_not_the_engines_dialect():
    book = book_of("""
  - id: latency
    match: {summary: {matches: "^High\\\\w+ on api-\\\\d+$"}}
    services: [api]
    then: [{set_status: degraded}]
""")
    assert ids(book, event(summary="HighLatency on api-12")) == ["latency"]
    assert ids(book, event(summary="HighLatency on api-x")) == []
    # `search` semantics: a pattern without anchors finds a substring.
    book2 = book_of(
        """
  - id: part
    match: {summary: {matches: "Latency"}}
    services: [api]
    then: [{set_status: degraded}]
""",
        2,
    )
    assert ids(book2, event(summary="HighLatency on api")) == ["part"]


def test_label_names_with_dots_and_absent_labels_follow_the_design():
    book = book_of("""
  - id: k8s
    match: {labels.app.kubernetes.io/name: web, labels.env: {ne: prod}}
    services: [web]
    then: [{set_status: degraded}]
  - id: not-in
    match: {labels.zone: {not_in: [eu, us]}, labels.gone: {exists: false}}
    services: [web]
    then: [{set_status: degraded}]
""")
    assert ids(book, event(labels={"app.kubernetes.io/name": "web"})) == ["k8s"]
    assert ids(book, event(labels={"app.kubernetes.io/name": "web", "env": "prod"})) == ["not-in"]
    assert ids(book, event(labels={"zone": "eu"})) == []
    assert ids(book, event(labels={"gone": "x"})) == []


def test_numeric_operators_compare_numbers_and_never_match_text():
    book = book_of("""
  - id: slow
    match: {labels.p99: {gt: 250, lte: 1000}}
    services: [api]
    then: [{set_status: degraded}]
""")
    assert ids(book, event(labels={"p99": "300.5"})) == ["slow"]
    assert ids(book, event(labels={"p99": "99"})) == []
    assert ids(book, event(labels={"p99": "2000"})) == []
    assert ids(book, event(labels={"p99": "fast"})) == []
    assert ids(book, event()) == []


def test_a_repeated_identical_event_matches_every_time():
    book = book_of(ORDERED)
    for _ in range(3):
        assert ids(book, event(severity="warning")) == ["third"]


def _reference(rules, ev) -> list[str]:
    """A plain-Python reading of DESIGN.md's matching rules, to check the engine against."""
    out = []
    for located in rules:
        if all(
            _holds(ev, path, op, arg)
            for path, c in located.rule.match.items()
            for op, arg in c.operators()
        ):
            out.append(located.rule.id)
            if not located.rule.continue_:
                break
    return out


def _holds(ev, path, op, arg) -> bool:
    value = event_value(ev, path)
    if op == "exists":
        return (value is not None) == arg
    if value is None:
        return op in ("ne", "not_in")
    if op == "eq":
        return value == as_text(arg)
    if op == "ne":
        return value != as_text(arg)
    if op == "in":
        return value in [as_text(v) for v in arg]
    if op == "not_in":
        return value not in [as_text(v) for v in arg]
    if op == "matches":
        return re.search(arg, value) is not None
    if op in ("startswith", "endswith", "contains"):
        return {
            "startswith": value.startswith,
            "endswith": value.endswith,
            "contains": value.__contains__,
        }[op](arg)
    try:
        number = float(value)
    except ValueError:
        return False
    return {"gt": number > arg, "gte": number >= arg, "lt": number < arg, "lte": number <= arg}[op]


def _random_rules(rng: random.Random, count: int) -> str:
    lines = []
    for i in range(count):
        conds = [f"labels.service: svc-{rng.randrange(200)}"] if rng.random() < 0.8 else []
        if rng.random() < 0.5:
            conds.append(f"source: {rng.choice(['am', 'kuma'])}")
        if rng.random() < 0.4:
            conds.append("severity: {in: [critical, high]}")
        if rng.random() < 0.2:
            conds.append(f"labels.alertname: {{startswith: Alert{rng.randrange(3)}}}")
        if rng.random() < 0.2:
            conds.append(f"labels.value: {{gte: {rng.randrange(100)}}}")
        if rng.random() < 0.1:
            conds.append("labels.env: {ne: prod}")
        cont = "true" if rng.random() < 0.2 else "false"
        lines.append(
            f"  - id: r{i}\n    match: {{{', '.join(conds)}}}\n    services: [api]\n"
            f"    continue: {cont}\n    then: [{{set_status: degraded}}]\n"
        )
    return "".join(lines)


@pytest.mark.parametrize("count", [10, 400])
def test_the_engine_agrees_with_a_plain_reading_of_the_rules(count):
    rng = random.Random(count)
    book = book_of(_random_rules(rng, count))
    for _ in range(300):
        source = rng.choice(["am", "kuma"])
        ev = event(
            source=source,
            source_type="alertmanager" if source == "am" else "uptime-kuma",
            severity=rng.choice(["critical", "high", "warning"]),
            labels={
                "service": f"svc-{rng.randrange(200)}",
                "alertname": f"Alert{rng.randrange(4)}x",
                "value": str(rng.randrange(120)),
                **({"env": "prod"} if rng.random() < 0.5 else {}),
            },
        )
        assert ids(book, ev) == _reference(book.spec.rules, ev)


def test_a_closed_book_refuses_to_match():
    book = book_of(ORDERED)
    book.match(event())
    book.close()
    with pytest.raises(RulesError):
        book.match(event())


def test_a_swap_keeps_the_old_book_until_its_batch_ends():
    runtime = RuleRuntime()
    runtime.swap(check({"r.yaml": "version: 1\nrules:\n" + ORDERED}, None), 1)
    with runtime.using() as old:
        runtime.swap(check({"r.yaml": "version: 1\nrules: []\n"}, None), 2)
        assert ids(old, event(severity="warning")) == ["third"]
    with runtime.using() as new:
        assert new.version == 2 and ids(new, event()) == []
    with pytest.raises(RulesError):
        old.match(event())


def test_fifty_reloads_leave_memory_and_threads_flat():
    rng = random.Random(7)
    text = "version: 1\nrules:\n" + _random_rules(rng, 150)
    runtime = RuleRuntime()
    threads = threading.active_count()

    def one(version: int) -> None:
        runtime.swap(check({"r.yaml": text}, None), version)
        with runtime.using() as book:
            for i in range(20):
                book.match(event(labels={"service": f"svc-{i}"}))

    for version in range(5):
        one(version)
    gc.collect()
    rulesets = ENGINE.ruleset_count
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for version in range(5, 55):
        one(version)
    gc.collect()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # durable_rules' own Host would add two timer threads per version; ours adds none.
    assert threading.active_count() == threads
    # Unchanged rules reuse their compiled rulesets: nothing new is kept per reload.
    assert ENGINE.ruleset_count == rulesets
    assert after - before < 20_000, f"peak RSS grew by {after - before} KiB over 50 reloads"
    runtime.close()


def test_fifty_reloads_that_each_change_a_rule_keep_only_what_changed():
    base = _random_rules(random.Random(8), 150)
    runtime = RuleRuntime()

    def one(version: int) -> None:
        # Each version edits the first rule's match: a real edit, not a no-op reload.
        text = base.replace(
            "  - id: r0\n    match: {", f"  - id: r0\n    match: {{labels.v: x{version}, ", 1
        )
        runtime.swap(check({"r.yaml": "version: 1\nrules:\n" + text}, None), version)
        with runtime.using() as book:
            for i in range(40):
                book.match(event(labels={"service": f"svc-{i}", "v": f"x{version}"}))

    for version in range(5):
        one(version)
    gc.collect()
    rulesets = ENGINE.ruleset_count
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for version in range(5, 55):
        one(version)
    gc.collect()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Only the rulesets holding the edited rule are new (one bucket's, at most two per
    # version); the partition's other rulesets are reused, and the compile check is freed.
    assert ENGINE.ruleset_count - rulesets <= 100
    assert after - before < 40_000, f"peak RSS grew by {after - before} KiB over 50 edits"
    runtime.close()


def test_rulesets_are_split_below_the_engines_limit_of_event_properties():
    # 150 rules with two Python-evaluated conditions each: as one ruleset, every event would
    # carry 300 0/1 properties, and durable_rules refuses more than 255 (error 302).
    text = "".join(
        f"  - id: l{i}\n"
        f"    match: {{labels.k{i}: {{contains: v}}, labels.j{i}: {{endswith: y}}}}\n"
        f"    services: [api]\n    then: [{{set_status: degraded}}]\n"
        for i in range(150)
    )
    book = book_of(text)
    assert ids(book, event(labels={"k149": "v", "j149": "y"})) == ["l149"]
    assert ids(book, event(labels={"k0": "v", "j0": "y", "k120": "v", "j120": "y"})) == ["l0"]
    assert ids(book, event(labels={"k120": "v", "j120": "x"})) == []


def test_an_infinite_label_compares_as_infinity_and_nan_as_no_number():
    # Prometheus writes +Inf (a histogram's `le` label); durable_rules cannot read an
    # infinite fact and used to refuse the whole event.
    book = book_of("""
  - id: above
    match: {labels.le: {gt: 250}}
    services: [api]
    then: [{set_status: degraded}]
  - id: below
    match: {labels.le: {lt: 250}}
    services: [api]
    then: [{set_status: degraded}]
""")
    assert ids(book, event(labels={"le": "+Inf"})) == ["above"]
    assert ids(book, event(labels={"le": "-Inf"})) == ["below"]
    assert ids(book, event(labels={"le": "1e400"})) == ["above"]
    assert ids(book, event(labels={"le": "NaN"})) == []
