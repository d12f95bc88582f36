"""The evaluator on real stores (SQLite file and PostgreSQL): intents become claims, status,
incidents, rule errors, deadlines; state survives between batches and rule reloads."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from engine.activations.claims import forget_source_alerts, release_claim
from engine.incidents import take_over
from engine.tables import (
    activation_alerts,
    activations,
    alert_events,
    alert_sources,
    channels,
    claims,
    deadlines,
    incident_templates,
    incident_updates,
    incidents,
    outbox,
    rule_errors,
    status_changes,
)
from engine.why import explain
from tests.rules.helpers import T0, event
from tests.rules.store_helpers import (
    evaluate,
    ingest,
    load_rules,
    open_claims,
    seed,
    status_of,
)
from workers.evaluate import end_maintenance, publish_rules, rules_runtime, tick

API = """
  - id: api-5xx
    match: {source: am}
    services: [api]
    then: [{set_status: partial_outage}]
"""


def test_resolving_one_alert_never_clears_a_status_another_alert_holds(store):
    ids = seed(store)
    runtime = load_rules(store, API)
    ingest(store, ids["am"], event(dedup_key="eu"), event(dedup_key="us", at=1))
    assert evaluate(store, runtime) == 2
    assert status_of(store, ids["api"]) == "partial_outage"
    ingest(store, ids["am"], event("resolved", dedup_key="eu", at=5))
    evaluate(store, runtime)
    assert status_of(store, ids["api"]) == "partial_outage"
    assert len(open_claims(store)) == 1
    ingest(store, ids["am"], event("resolved", dedup_key="us", at=6))
    evaluate(store, runtime)
    assert status_of(store, ids["api"]) == "operational"
    with store.read() as conn:
        changes = conn.execute(sa.select(status_changes).order_by(status_changes.c.id)).all()
        outcomes = conn.execute(
            sa.select(alert_events.c.outcome, alert_events.c.evaluated_at)
        ).all()
    assert [(c.new_status, c.cause_kind, c.cause["rule"]) for c in changes] == [
        ("partial_outage", "rule", "api-5xx"),
        ("operational", "rule", "api-5xx"),
    ]
    assert all(o.evaluated_at is not None and o.outcome["rules_version"] == 1 for o in outcomes)


def test_duplicate_and_out_of_order_events_have_no_second_effect(store):
    ids = seed(store)
    runtime = load_rules(store, API)
    ingest(
        store,
        ids["am"],
        event(at=60),
        event(at=61),  # a re-send
        event("resolved", at=62, occurred=30),  # older than the firing: ignored
    )
    evaluate(store, runtime)
    assert status_of(store, ids["api"]) == "partial_outage"
    assert len(open_claims(store)) == 1


def test_for_acts_on_the_clock_through_a_deadline(store):
    ids = seed(store)
    runtime = load_rules(store, API.replace("services: [api]", "services: [api]\n    for: 2m"))
    ingest(store, ids["am"], event())
    evaluate(store, runtime)
    with store.read() as conn:
        due = conn.execute(sa.select(deadlines.c.kind, deadlines.c.due_at)).all()
    assert [(d.kind, d.due_at) for d in due] == [("rules.tick", T0 + timedelta(minutes=2))]
    assert tick(store, runtime, T0 + timedelta(minutes=1)) == 0
    assert status_of(store, ids["api"]) == "operational"
    assert tick(store, runtime, T0 + timedelta(minutes=3)) == 1
    assert status_of(store, ids["api"]) == "partial_outage"


def test_an_incident_opens_from_its_template_and_a_person_can_take_it_over(store):
    ids = seed(store)
    rules = """
  - id: api-down
    match: {source: am}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {template: outage}
"""
    runtime = load_rules(store, rules)
    ingest(store, ids["am"], event(summary="502s"), event(dedup_key="b", at=1, summary="x"))
    evaluate(store, runtime)
    with store.begin() as conn:
        rows = conn.execute(sa.select(incidents).order_by(incidents.c.id)).all()
        assert [(r.title, r.status, r.impact, r.managed_by) for r in rows] == [
            ("Api down: 502s", "investigating", "critical", "automation"),
            ("Api down: x", "investigating", "critical", "automation"),
        ]
        # A person takes the second one over.
        take_over(conn, rows[1].id, "ops@example.com")
    ingest(store, ids["am"], event("resolved", at=10), event("resolved", dedup_key="b", at=11))
    evaluate(store, runtime)
    with store.read() as conn:
        rows = conn.execute(sa.select(incidents).order_by(incidents.c.id)).all()
        updates = conn.execute(
            sa.select(
                incident_updates.c.incident_id, incident_updates.c.status, incident_updates.c.body
            ).order_by(incident_updates.c.id)
        ).all()
        kinds = [r.kind for r in conn.execute(sa.select(outbox.c.kind).order_by(outbox.c.id))]
    assert [r.status for r in rows] == ["resolved", "investigating"]
    assert [tuple(u) for u in updates] == [
        (rows[0].id, "investigating", "Investigating."),
        (rows[1].id, "investigating", "Investigating."),
        (rows[0].id, "resolved", "Recovered."),
    ]
    assert "pages.dirty" in kinds
    # The taken-over incident still holds the service's status.
    assert status_of(store, ids["api"]) == "major_outage"


def test_an_incident_opened_on_the_clock_renders_its_event_and_its_errors_show_in_why(store):
    # `for` acts in a tick, with no event in hand: the template renders the latest firing
    # event of the activation, kept with it in the store; a template that fails there is a
    # rule error `why` shows for the rule's services.
    ids = seed(store)
    with store.begin() as conn:
        conn.execute(
            incident_templates.insert().values(
                team_id=ids["team"], key="broken", title="{{ event.nonexistent.deeper }}"
            )
        )
    rules = """
  - id: api-down
    match: {source: am, labels.alertname: Down}
    services: [api]
    for: 2m
    then:
      - set_status: major_outage
      - open_incident: {template: outage}
  - id: web-down
    match: {source: am, labels.alertname: WebDown}
    services: [web]
    for: 2m
    then:
      - set_status: major_outage
      - open_incident: {template: broken}
"""
    runtime = load_rules(store, rules)
    ingest(
        store,
        ids["am"],
        event(labels={"alertname": "Down"}, summary="502s"),
        event(dedup_key="b", at=30, labels={"alertname": "Down"}, summary="504s"),
        event(dedup_key="w", labels={"alertname": "WebDown"}, summary="down"),
    )
    evaluate(store, runtime)
    tick(store, runtime, T0 + timedelta(minutes=3))
    with store.read() as conn:
        titles = conn.execute(sa.select(incidents.c.title)).scalars().all()
        report = explain(conn, "web")
    # One activation per alert (no group_by), each rendering its own event.
    assert sorted(titles) == ["Api down: 502s", "Api down: 504s"]
    assert status_of(store, ids["web"]) == "major_outage"
    [error] = report["rule_errors"]
    assert error["rule"] == "web-down"
    assert "template 'broken' failed to render" in error["message"]


def test_a_service_from_value_naming_no_service_is_recorded_and_shown_by_why(store):
    ids = seed(store)
    runtime = load_rules(
        store,
        """
  - id: by-label
    match: {source: am}
    service_from: labels.service
    then: [{set_status: degraded}]
""",
    )
    ingest(
        store,
        ids["am"],
        event(labels={"service": "payments"}),
        event(dedup_key="w", labels={"service": "web"}),
    )
    evaluate(store, runtime)
    assert status_of(store, ids["web"]) == "degraded"
    with store.read() as conn:
        errors = conn.execute(sa.select(rule_errors.c.rule_id, rule_errors.c.message)).all()
        evaluated = conn.execute(
            sa.select(sa.func.count()).where(alert_events.c.evaluated_at.isnot(None))
        ).scalar()
        report = explain(conn, "web")
    assert [tuple(e) for e in errors] == [("by-label", "no service 'payments' in team 'platform'")]
    assert evaluated == 2  # the event is kept and evaluated
    assert report["status"] == "degraded"
    assert report["claims"][0]["rule"] == "by-label"
    assert report["claims"][0]["alerts"] == [{"source": "am", "dedup_key": "w", "firing": True}]
    assert report["rule_errors"][0]["message"] == "no service 'payments' in team 'platform'"
    assert report["because"].startswith("degraded: the worst of rule by-label claims degraded")


def test_maintenance_holds_firing_and_replays_still_firing_alerts_at_its_end(store):
    ids = seed(store)
    runtime = load_rules(
        store,
        """
  - id: db
    match: {source: am}
    services: [db]
    then: [{set_status: major_outage}]
""",
    )
    made = ingest(
        store,
        ids["am"],
        event(at=11 * 60),
        event(dedup_key="gone", at=12 * 60),
        event("resolved", dedup_key="gone", at=13 * 60),
    )
    evaluate(store, runtime)
    assert open_claims(store) == []
    with store.read() as conn:
        gone = conn.execute(
            sa.select(alert_events.c.outcome).where(alert_events.c.id == made[2])
        ).scalar_one()
    # What happened to them, naming the window as people know it (its key).
    with store.read() as conn:
        held = conn.execute(
            sa.select(alert_events.c.outcome).where(alert_events.c.id == made[0])
        ).scalar_one()
    assert held["effects"] == ["db: held by maintenance mw"]
    # Nothing to end now, and the window's end will not replay it.
    assert gone["effects"] == ["resolved while held by maintenance mw"]
    assert end_maintenance(store, runtime, ids["window"]) == 1
    assert [c.service_id for c in open_claims(store)] == [ids["db"]]


def test_a_reload_swaps_rules_and_activations_carry_over(store):
    ids = seed(store)
    runtime = load_rules(store, API)
    ingest(store, ids["am"], event())
    evaluate(store, runtime)
    publish_rules(
        store,
        {"rules.yaml": "version: 1\nrules:\n" + API.replace("partial_outage", "degraded")},
        None,
    )
    runtime = rules_runtime(store, runtime)
    assert runtime.book is not None and runtime.book.version == 2
    # The new version's rule matches new alerts with its new status ...
    ingest(store, ids["am"], event(dedup_key="new", at=5))
    evaluate(store, runtime)
    assert sorted(c.status for c in open_claims(store)) == ["degraded", "partial_outage"]
    # ... and the old activation still ends on its alert's resolve.
    ingest(store, ids["am"], event("resolved", at=10))
    evaluate(store, runtime)
    assert [c.status for c in open_claims(store)] == ["degraded"]
    with store.read() as conn:
        states = (
            conn.execute(sa.select(activations.c.state).order_by(activations.c.id)).scalars().all()
        )
    assert states == ["ended", "active"]


def test_publishing_the_same_rules_again_keeps_the_version(store):
    files = {"r.yaml": "version: 1\nrules:\n" + API}
    assert publish_rules(store, files, None) == 1
    assert publish_rules(store, files, None) == 1


def test_notify_hands_one_message_per_activation_and_state_to_the_channel_worker(store):
    ids = seed(store)
    with store.begin() as conn:
        conn.execute(
            channels.insert().values(team_id=ids["team"], key="slack", type="slack", config={})
        )
    runtime = load_rules(
        store,
        """
  - id: api
    match: {source: am}
    services: [api]
    resolve: {after: 1m}
    then: [{notify: {channel: slack}}]
""",
    )
    ingest(
        store,
        ids["am"],
        event(summary="boom"),
        event("resolved", at=5),
        event(at=10),  # a flap inside resolve.after: no second message
        event("resolved", at=20),
    )
    evaluate(store, runtime)
    tick(store, runtime, T0 + timedelta(minutes=5))
    with store.read() as conn:
        payloads = [
            r.payload
            for r in conn.execute(
                sa.select(outbox.c.payload)
                .where(outbox.c.kind == "notify.channel")
                .order_by(outbox.c.id)
            )
        ]
    # The state, the service by name and the rule; the alert's own summary (issue 19).
    assert [(p["subject"], p["text"]) for p in payloads] == [
        ("Firing: Api (api)", "boom"),
        ("Resolved: Api (api)", ""),
    ]
    assert len({p["dedup_key"] for p in payloads}) == 2


def test_an_operator_releases_one_claim_and_the_activation_runs_on(store):
    ids = seed(store)
    # Two rules claim the API for the same alert: the first lets the second act too.
    first = API.replace("services: [api]", "services: [api]\n    continue: true")
    second = API.replace("id: api-5xx", "id: api-slow").replace("partial_outage", "degraded")
    runtime = load_rules(store, first + second)
    ingest(store, ids["am"], event())
    evaluate(store, runtime)
    assert status_of(store, ids["api"]) == "partial_outage"
    with store.begin() as conn:
        claim = conn.execute(
            sa.select(claims.c.id).where(claims.c.rule_id == "api-5xx")
        ).scalar_one()
        assert release_claim(conn, claim, by="ops@example.com")
        assert not release_claim(conn, claim, by="ops@example.com")
    assert status_of(store, ids["api"]) == "degraded"
    ingest(store, ids["am"], event("resolved", at=5))
    evaluate(store, runtime)
    assert status_of(store, ids["api"]) == "operational"
    with store.read() as conn:
        released = conn.execute(
            sa.select(claims.c.rule_id, claims.c.released_by).order_by(claims.c.id)
        ).all()
    assert [tuple(r) for r in released] == [
        ("api-5xx", "ops@example.com"),
        ("api-slow", "rule:api-slow"),
    ]


def test_ten_flaps_inside_resolve_after_keep_one_incident_and_a_steady_status(store):
    ids = seed(store)
    runtime = load_rules(
        store,
        """
  - id: api-flaps
    match: {source: am}
    services: [api]
    resolve: {after: 5m}
    then:
      - set_status: major_outage
      - open_incident: {template: outage}
""",
    )
    flaps = []
    for i in range(10):
        flaps += [event(at=i * 20, summary="flap"), event("resolved", at=i * 20 + 10)]
    ingest(store, ids["am"], *flaps)
    evaluate(store, runtime)
    assert status_of(store, ids["api"]) == "major_outage"
    tick(store, runtime, T0 + timedelta(minutes=4))
    assert status_of(store, ids["api"]) == "major_outage"
    tick(store, runtime, T0 + timedelta(minutes=10))
    assert status_of(store, ids["api"]) == "operational"
    with store.read() as conn:
        opened = conn.execute(sa.select(incidents.c.status)).scalars().all()
        changes = (
            conn.execute(sa.select(status_changes.c.new_status).order_by(status_changes.c.id))
            .scalars()
            .all()
        )
    assert opened == ["resolved"]
    assert changes == ["major_outage", "operational"]


def test_a_late_firing_older_than_its_resolve_starts_nothing_on_the_store(store):
    ids = seed(store)
    runtime = load_rules(store, API)
    ingest(store, ids["am"], event(at=60), event("resolved", at=70))
    evaluate(store, runtime)
    ingest(store, ids["am"], event(at=80, occurred=30))
    evaluate(store, runtime)
    assert open_claims(store) == []
    # In one batch, a firing followed by its resolve is evaluated in order, not skipped.
    ingest(store, ids["am"], event(dedup_key="x", at=90), event("resolved", dedup_key="x", at=95))
    evaluate(store, runtime)
    with store.read() as conn:
        changes = (
            conn.execute(sa.select(status_changes.c.new_status).order_by(status_changes.c.id))
            .scalars()
            .all()
        )
    assert changes == ["partial_outage", "operational", "partial_outage", "operational"]


def test_a_firing_older_than_a_resolve_before_it_in_the_same_batch_starts_nothing(store):
    # A tool's recovery, then its late retry of the failure (older by the tool's clock),
    # posted back to back: one evaluation batch sees both, in arrival order.
    ids = seed(store)
    runtime = load_rules(store, API)
    ingest(store, ids["am"], event("resolved", at=60, occurred=50), event(at=70, occurred=10))
    evaluate(store, runtime)
    assert open_claims(store) == []
    assert status_of(store, ids["api"]) == "operational"
    with store.read() as conn:
        late = conn.execute(
            sa.select(alert_events.c.outcome).order_by(alert_events.c.id.desc()).limit(1)
        ).scalar_one()
    # Matched, and ignored: in one word, what happened to it.
    assert late["result"] == "ignored" and late["matched"] == ["api-5xx"], late


def _flaps_and_outcomes(store, monkeypatch, batch_seconds):
    import workers.evaluate as evaluate_mod

    monkeypatch.setattr(evaluate_mod, "BATCH_SECONDS", batch_seconds)
    ids = seed(store)
    runtime = load_rules(store, API)
    events = []
    for i in range(30):
        key = f"k{i % 4}"
        events += [event(at=i * 2, dedup_key=key), event("resolved", at=i * 2 + 1, dedup_key=key)]
    ingest(store, ids["am"], *events, event(at=100, dedup_key="last"))
    commits = []

    def count(conn):
        commits.append(1)

    sa.event.listen(store.engine, "commit", count)
    evaluated = evaluate(store, runtime)
    sa.event.remove(store.engine, "commit", count)
    with store.read() as conn:
        outcomes = [
            (o["result"], o["matched"], o["effects"])
            for o in conn.execute(
                sa.select(alert_events.c.outcome).order_by(alert_events.c.id)
            ).scalars()
        ]
        changes = (
            conn.execute(sa.select(status_changes.c.new_status).order_by(status_changes.c.id))
            .scalars()
            .all()
        )
    return evaluated, len(commits), outcomes, changes, status_of(store, ids["api"])


def test_time_bounded_evaluation_transactions_change_nothing_but_their_number(
    store, monkeypatch, tmp_path
):
    # With no time to spare, each transaction evaluates one event (a long one would hold
    # SQLite's write lock, which every webhook's group commit waits for); the outcomes,
    # status history and final status are those of one big transaction.
    from engine.db import create_store
    from engine.migrate import upgrade
    from engine.settings import Settings

    other = create_store(Settings.from_env({"BEACON_DATA_DIR": str(tmp_path / "other")}))
    upgrade(other)
    try:
        tight = _flaps_and_outcomes(other, monkeypatch, 0.0)
    finally:
        other.dispose()
    roomy = _flaps_and_outcomes(store, monkeypatch, 60.0)
    assert tight[0] == roomy[0] == 61
    assert tight[1] >= 61 > roomy[1]
    assert tight[2:] == roomy[2:]
    assert roomy[4] == "partial_outage"


class _StreamClock:
    """`workers.evaluate`'s view of `time`: a monotonic clock that moves `step` seconds at
    every reading and as long as asked in `sleep`. Each reading and each sleep commits the
    next of `arrivals`: deliveries that keep coming while the evaluator works."""

    def __init__(self, store, source_id, arrivals, step=0.002):
        self.store, self.source_id, self.arrivals = store, source_id, iter(arrivals)
        self.step = step
        self.pauses: list[float] = []
        self.now = 0.0
        self.perf_counter = time.perf_counter

    def _arrive(self) -> None:
        burst = next(self.arrivals, None)
        if burst:
            ingest(self.store, self.source_id, *burst)

    def monotonic(self) -> float:
        self.now += self.step
        self._arrive()
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds
        self._arrive()


def _burst(start: int, count: int) -> list[Any]:
    return [event(at=start + i, dedup_key=f"k{start + i}") for i in range(count)]


def _pending(store) -> int:
    with store.read() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(alert_events.c.evaluated_at.is_(None))
        ).scalar_one()


def test_a_stream_is_evaluated_in_batches_that_wait_for_more(store, monkeypatch):
    # One transaction per intake commit would queue every group commit behind one more
    # transaction; under a stream, the next batch waits for more arrivals (on SQLite).
    import workers.evaluate as evaluate_mod

    # Batches end when they caught up, not on time (that bound has its own test).
    monkeypatch.setattr(evaluate_mod, "BATCH_SECONDS", 60.0)
    ids = seed(store)
    runtime = load_rules(store, API)
    clock = _StreamClock(store, ids["am"], [_burst(100 * n, 25) for n in range(1, 9)])
    monkeypatch.setattr(evaluate_mod, "time", clock)
    ingest(store, ids["am"], *_burst(0, 25))
    assert evaluate(store, runtime) == 225
    assert _pending(store) == 0
    if store.is_postgres:
        # No write lock to share: batches follow each other at once.
        assert clock.pauses == []
    else:
        # The wait counts from the start of the batch before, which took time.
        assert clock.pauses
        assert all(0 < p < evaluate_mod.STREAM_INTERVAL for p in clock.pauses)
    assert status_of(store, ids["api"]) == "partial_outage"


def test_a_burst_a_small_group_and_a_backlog_are_evaluated_without_pause(store, monkeypatch):
    import workers.evaluate as evaluate_mod

    monkeypatch.setattr(evaluate_mod, "BATCH_SECONDS", 60.0)
    ids = seed(store)
    runtime = load_rules(store, API)
    clock = _StreamClock(store, ids["am"], [])
    monkeypatch.setattr(evaluate_mod, "time", clock)
    ingest(store, ids["am"], *_burst(0, 100))
    assert evaluate(store, runtime) == 100
    ingest(store, ids["am"], *_burst(200, 3))
    assert evaluate(store, runtime) == 3
    # A backlog in batches of 10: the last one catches up, but nothing arrived meanwhile.
    monkeypatch.setattr(evaluate_mod, "BATCH", 10)
    monkeypatch.setattr(evaluate_mod, "STREAM_EVENTS", 5)
    ingest(store, ids["am"], *_burst(300, 35))
    assert evaluate(store, runtime) == 35
    assert clock.pauses == []


def test_a_stream_that_goes_on_gives_the_job_back(store, monkeypatch):
    # Other partitions of the job get their turn; the events still arriving have an
    # `evaluate` row of their own (the intake writes one once this job's is claimed).
    import workers.evaluate as evaluate_mod

    monkeypatch.setattr(evaluate_mod, "BATCH_SECONDS", 60.0)
    ids = seed(store)
    runtime = load_rules(store, API)
    endless = [_burst(100 * n, 25) for n in range(1, 200)]
    clock = _StreamClock(store, ids["am"], endless, step=0.1)
    monkeypatch.setattr(evaluate_mod, "time", clock)
    ingest(store, ids["am"], *_burst(0, 25))
    evaluated = evaluate(store, runtime)
    assert 25 < evaluated < 25 * 200
    assert clock.now >= evaluate_mod.STREAM_BUDGET
    assert _pending(store) > 0


def test_a_backlog_that_goes_on_gives_the_job_back_with_a_row_for_the_rest(store, monkeypatch):
    # A job may not outlive RQ's timeout, which kills it mid-batch: past BACKLOG_BUDGET (as
    # jobs pass it) it stops, and an `evaluate` row takes the partition's rest to another job.
    import workers.evaluate as evaluate_mod
    from engine.tables import outbox as outbox_table

    monkeypatch.setattr(evaluate_mod, "BATCH_SECONDS", 60.0)
    monkeypatch.setattr(evaluate_mod, "BATCH", 10)
    ids = seed(store)
    runtime = load_rules(store, API)
    # Each batch of 10 finds 15 more: it never catches up.
    endless = [_burst(100 * n, 15) for n in range(1, 400)]
    clock = _StreamClock(store, ids["am"], endless, step=1.0)
    monkeypatch.setattr(evaluate_mod, "time", clock)
    ingest(store, ids["am"], *_burst(0, 15))
    budget = evaluate_mod.BACKLOG_BUDGET
    evaluated = evaluate_mod.evaluate_partition(store, runtime, "am", backlog_budget=budget)
    assert evaluated > 0
    assert evaluate_mod.BACKLOG_BUDGET <= clock.now < 2 * evaluate_mod.BACKLOG_BUDGET
    assert _pending(store) > 0
    with store.read() as conn:
        rows = conn.execute(
            sa.select(outbox_table.c.payload).where(outbox_table.c.kind == "evaluate")
        ).all()
    assert [r.payload for r in rows] == [{"partition": "am"}]


GROUPED = """
  - id: storm
    match: {source: am}
    group_by: [labels.alertname]
    services: [api]
    then: [{set_status: major_outage}]
"""


class _CountingCursor:
    """A DBAPI cursor that counts the rows fetched through it into `fetched[0]`."""

    def __init__(self, cursor: Any, fetched: list[int]) -> None:
        self._cursor = cursor
        self._fetched = fetched

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()
        self._fetched[0] += row is not None
        return row

    def fetchmany(self, *args: Any) -> Any:
        rows = self._cursor.fetchmany(*args)
        self._fetched[0] += len(rows)
        return rows

    def fetchall(self) -> Any:
        rows = self._cursor.fetchall()
        self._fetched[0] += len(rows)
        return rows


def _cost_per_event(store, runtime, ids, name: str, held: int) -> list[tuple[int, int]]:
    """(statements run, rows fetched) by the evaluator for one new alert, one re-firing and
    one resolve arriving (each alone) at the activation of `name` that already groups `held`
    alerts."""
    labels = {"alertname": name}
    ingest(
        store,
        ids["am"],
        *(event(dedup_key=f"{name}-{i}", at=i / 1000, labels=labels) for i in range(held)),
    )
    evaluate(store, runtime)
    statements: list[str] = []
    fetched = [0]

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)
        # SQLAlchemy builds the statement's result on `context.cursor` after this hook.
        context.cursor = _CountingCursor(cursor, fetched)

    counts = []
    for late in (
        event(dedup_key=f"{name}-new", at=10, labels=labels),
        event(dedup_key=f"{name}-0", at=11, labels=labels),
        event("resolved", dedup_key=f"{name}-1", at=12, labels=labels),
    ):
        ingest(store, ids["am"], late)
        statements.clear()
        fetched[0] = 0
        sa.event.listen(store.engine, "after_cursor_execute", count)
        try:
            assert evaluate(store, runtime) == 1
        finally:
            sa.event.remove(store.engine, "after_cursor_execute", count)
        counts.append((len(statements), fetched[0]))
    return counts


def test_an_event_costs_the_same_statements_and_rows_however_many_alerts_it_groups(store):
    # A storm's activation may group thousands of alerts: an evaluation transaction (about
    # 25 ms) must not read them all to add, re-fire or resolve one.
    ids = seed(store)
    runtime = load_rules(store, GROUPED)
    few = _cost_per_event(store, runtime, ids, "Few", 3)
    many = _cost_per_event(store, runtime, ids, "Many", 300)
    assert few == many
    with store.read() as conn:
        rows = conn.execute(
            sa.select(
                activation_alerts.c.dedup_key,
                activation_alerts.c.firing,
                activation_alerts.c.resolved_at,
                activation_alerts.c.last_occurred_at,
            ).where(activation_alerts.c.dedup_key.like("Many-%"))
        ).all()
    by_key = {r.dedup_key: r for r in rows}
    assert len(by_key) == 301
    assert by_key["Many-new"].firing and by_key["Many-new"].resolved_at is None
    assert by_key["Many-0"].firing and by_key["Many-0"].last_occurred_at == T0 + timedelta(
        seconds=11
    )
    assert not by_key["Many-1"].firing
    assert by_key["Many-1"].resolved_at == T0 + timedelta(seconds=12)
    assert all(r.firing for k, r in by_key.items() if k != "Many-1")


def test_alerts_changed_twice_in_one_batch_are_stored_as_last_changed(store):
    ids = seed(store)
    runtime = load_rules(store, GROUPED)
    labels = {"alertname": "Storm"}
    ingest(store, ids["am"], *(event(dedup_key=f"s{i}", at=i, labels=labels) for i in range(3)))
    evaluate(store, runtime)
    # One transaction: s0 resolves and fires again, s1 resolves, s3 joins and resolves.
    ingest(
        store,
        ids["am"],
        event("resolved", dedup_key="s0", at=10, labels=labels),
        event(dedup_key="s3", at=11, labels=labels),
        event("resolved", dedup_key="s1", at=12, labels=labels),
        event(dedup_key="s0", at=13, labels=labels),
        event("resolved", dedup_key="s3", at=14, labels=labels),
    )
    assert evaluate(store, runtime) == 5
    with store.read() as conn:
        rows = conn.execute(
            sa.select(
                activation_alerts.c.dedup_key,
                activation_alerts.c.firing,
                activation_alerts.c.resolved_at,
                activation_alerts.c.last_occurred_at,
            ).order_by(activation_alerts.c.id)
        ).all()
    at = {s: T0 + timedelta(seconds=s) for s in range(15)}
    assert [(r.dedup_key, r.firing, r.resolved_at, r.last_occurred_at) for r in rows] == [
        ("s0", True, at[10], at[13]),
        ("s1", False, at[12], at[12]),
        ("s2", True, None, at[2]),
        ("s3", False, at[14], at[14]),
    ]
    assert status_of(store, ids["api"]) == "major_outage"


def _poisoned(monkeypatch, error):
    """Machine.on_event raising `error` for events whose dedup key is `poison`."""
    from engine.activations import Machine

    real = Machine.on_event

    def on_event(self, event, *args, **kwargs):
        if event.dedup_key == "poison":
            raise error
        return real(self, event, *args, **kwargs)

    monkeypatch.setattr(Machine, "on_event", on_event)


def test_an_event_that_fails_is_set_aside_and_its_partition_goes_on(store, monkeypatch, caplog):
    ids = seed(store)
    runtime = load_rules(store, API)
    _poisoned(monkeypatch, RuntimeError("a bug"))
    first, poison, last = ingest(
        store,
        ids["am"],
        event(dedup_key="eu"),
        event(dedup_key="poison", at=1),
        event(dedup_key="us", at=2),
    )
    assert evaluate(store, runtime) == 2
    with store.read() as conn:
        outcomes = dict(conn.execute(sa.select(alert_events.c.id, alert_events.c.outcome)).all())
    assert outcomes[first]["result"] == outcomes[last]["result"] == "matched"
    assert outcomes[poison]["result"] == "error" and outcomes[poison]["effects"] == []
    assert "evaluating event" in caplog.text and "a bug" in caplog.text
    assert status_of(store, ids["api"]) == "partial_outage"
    assert len(open_claims(store)) == 2  # eu and us; poison changed nothing
    # Later events of the partition are evaluated as usual.
    ingest(store, ids["am"], event("resolved", dedup_key="eu", at=5))
    ingest(store, ids["am"], event("resolved", dedup_key="us", at=6))
    assert evaluate(store, runtime) == 2
    assert status_of(store, ids["api"]) == "operational"


DB = """
  - id: db
    match: {source: am}
    services: [db]
    then: [{set_status: major_outage}]
"""


def test_a_held_alert_that_fails_its_replay_does_not_keep_the_others_back(
    store, monkeypatch, caplog
):
    from engine.tables import held_alerts

    ids = seed(store)
    runtime = load_rules(store, DB)
    ingest(store, ids["am"], event(dedup_key="poison", at=11 * 60), event(at=12 * 60))
    evaluate(store, runtime)
    assert open_claims(store) == []  # both held by the window
    _poisoned(monkeypatch, RuntimeError("a bug"))
    assert end_maintenance(store, runtime, ids["window"]) == 1
    assert [c.service_id for c in open_claims(store)] == [ids["db"]]
    assert "released without a replay" in caplog.text and "a bug" in caplog.text
    with store.read() as conn:
        pending = conn.execute(
            sa.select(held_alerts.c.id).where(held_alerts.c.released_at.is_(None))
        ).all()
    assert pending == []  # a retry of the job finds nothing to fail on
    assert end_maintenance(store, runtime, ids["window"]) == 0


def test_a_store_error_while_replaying_a_window_fails_its_job(store, monkeypatch):
    from engine.tables import held_alerts

    ids = seed(store)
    runtime = load_rules(store, DB)
    ingest(store, ids["am"], event(dedup_key="poison", at=11 * 60))
    evaluate(store, runtime)
    _poisoned(monkeypatch, sa.exc.OperationalError("UPDATE", {}, Exception("server closed")))
    try:
        end_maintenance(store, runtime, ids["window"])
    except sa.exc.OperationalError:
        pass
    else:
        raise AssertionError("the store's error must reach the job, which retries it")
    with store.read() as conn:
        assert conn.execute(sa.select(held_alerts.c.released_at)).scalar() is None


def test_each_outcome_says_in_one_word_what_happened_to_the_event(store):
    ids = seed(store)
    runtime = load_rules(
        store,
        """
  - id: api
    match: {source: am, labels.team: api}
    services: [api]
    then: [{set_status: partial_outage}]
  - id: db
    match: {source: am, labels.team: db}
    services: [db]
    then: [{set_status: major_outage}]
""",
    )
    api, db, other = {"team": "api"}, {"team": "db"}, {"team": "nobody"}
    made = ingest(
        store,
        ids["am"],
        event(dedup_key="nothing", labels=other),
        event(dedup_key="a", at=1, labels=api),
        event("resolved", dedup_key="a", at=2, occurred=0),  # older than its firing
        event("resolved", dedup_key="a", at=3),
        event("resolved", dedup_key="never-fired", at=4),
        event(dedup_key="d", at=11 * 60, labels=db),  # the window on db holds it
    )
    evaluate(store, runtime)
    with store.read() as conn:
        results = dict(
            conn.execute(
                sa.select(alert_events.c.id, alert_events.c.outcome["result"].as_string())
            ).all()
        )
    assert [results[i] for i in made] == [
        "no_match",
        "matched",
        "ignored",
        "applied",
        "no_match",
        "held",
    ]


def test_a_resolve_before_a_for_rule_acted_says_it_ended_the_activation(store):
    ids = seed(store)
    runtime = load_rules(store, API.replace("services: [api]", "services: [api]\n    for: 2m"))
    made = ingest(store, ids["am"], event(), event("resolved", at=30))
    evaluate(store, runtime)
    tick(store, runtime, T0 + timedelta(minutes=3))
    with store.read() as conn:
        resolve = conn.execute(
            sa.select(alert_events.c.outcome).where(alert_events.c.id == made[1])
        ).scalar_one()
    assert resolve["result"] == "applied"
    assert resolve["effects"] == ["api-5xx: ended before acting"]
    assert status_of(store, ids["api"]) == "operational"


def test_a_store_error_is_not_the_events_fault(store, monkeypatch):
    ids = seed(store)
    runtime = load_rules(store, API)
    _poisoned(monkeypatch, sa.exc.OperationalError("UPDATE", {}, Exception("server closed")))
    ingest(store, ids["am"], event(dedup_key="poison"))
    try:
        evaluate(store, runtime)
    except sa.exc.OperationalError:
        pass
    else:
        raise AssertionError("the store's error must reach the job, which retries it")
    with store.read() as conn:
        assert conn.execute(sa.select(alert_events.c.evaluated_at)).scalar() is None


def test_a_row_that_cannot_be_read_back_is_set_aside(sqlite_store):
    # What the intake once wrote for a year-1 tool time on SQLite: text SQLAlchemy refuses.
    ids = seed(sqlite_store)
    runtime = load_rules(sqlite_store, API)
    bad, good = ingest(sqlite_store, ids["am"], event(dedup_key="old"), event(dedup_key="us", at=1))
    with sqlite_store.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE alert_events SET occurred_at = '1-01-01 00:00:00.000000' WHERE id = ?", (bad,)
        )
    assert evaluate(sqlite_store, runtime) == 1
    with sqlite_store.read() as conn:
        outcomes = dict(
            conn.execute(
                sa.select(alert_events.c.id, alert_events.c.outcome).where(
                    alert_events.c.id.in_([bad, good])
                )
            ).all()
        )
    assert outcomes == {
        bad: {**outcomes[bad], "result": "error"},
        good: {**outcomes[good], "result": "matched"},
    }
    assert status_of(sqlite_store, ids["api"]) == "partial_outage"


def _two_waiting_for_the_clock(store):
    """Two activations of a `for: 2m` rule, `poison` and `eu`, both due at T0 + 2 min."""
    ids = seed(store)
    runtime = load_rules(store, API.replace("services: [api]", "services: [api]\n    for: 2m"))
    ingest(store, ids["am"], event(dedup_key="poison"), event(dedup_key="eu", at=1))
    evaluate(store, runtime)
    return ids, runtime


def test_an_activation_whose_timer_fails_is_taken_off_the_clock(store, monkeypatch, caplog):
    from engine.activations import Machine

    ids, runtime = _two_waiting_for_the_clock(store)
    real = Machine._expire

    def expire(self, act, *args, **kwargs):
        if act.alerts.get(("am", "poison")) is not None:
            raise RuntimeError("a bug")
        return real(self, act, *args, **kwargs)

    monkeypatch.setattr(Machine, "_expire", expire)
    # The poisoned activation is due first; the other one still acts on time.
    assert tick(store, runtime, T0 + timedelta(minutes=3)) == 1
    assert status_of(store, ids["api"]) == "partial_outage"
    assert "taken off the clock" in caplog.text
    with store.read() as conn:
        stopped = conn.execute(
            sa.select(activations.c.error, activations.c.due_at).where(
                activations.c.error.is_not(None)
            )
        ).all()
        timers = conn.execute(sa.select(deadlines.c.key)).scalars().all()
    assert [(s.error is not None, s.due_at) for s in stopped] == [(True, None)]
    assert timers == []
    assert tick(store, runtime, T0 + timedelta(minutes=4)) == 0


def test_an_activation_ends_when_its_last_counted_firing_alert_resolves(store):
    # Alerts resolve one transaction each, in an activation whose alerts are never all read:
    # the count of firing alerts kept on the activation ends it with the last one, not before.
    ids = seed(store)
    runtime = load_rules(store, GROUPED)
    labels = {"alertname": "Storm"}
    ingest(store, ids["am"], *(event(dedup_key=f"s{i}", at=i, labels=labels) for i in range(4)))
    evaluate(store, runtime)
    for i in range(4):
        assert status_of(store, ids["api"]) == "major_outage"
        ingest(store, ids["am"], event("resolved", dedup_key=f"s{i}", at=10 + i, labels=labels))
        evaluate(store, runtime)
        ingest(store, ids["am"], event("resolved", dedup_key=f"s{i}", at=20 + i, labels=labels))
        evaluate(store, runtime)  # a repeated resolve counts once
    assert status_of(store, ids["api"]) == "operational"
    with store.read() as conn:
        row = conn.execute(sa.select(activations.c.state, activations.c.firing_alerts)).one()
    assert tuple(row) == ("ended", 0)


def _delete_source(store, source_id: int, now) -> None:
    with store.begin() as conn:
        forget_source_alerts(conn, source_id, now)
        conn.execute(alert_sources.delete().where(alert_sources.c.id == source_id))


def test_deleting_a_source_leaves_its_alerts_activations_ending_on_the_others(store):
    ids = seed(store)
    runtime = load_rules(store, GROUPED.replace("{source: am}", "{labels.alertname: Storm}"))
    labels = {"alertname": "Storm"}
    ingest(store, ids["am"], event(dedup_key="a", labels=labels))
    evaluate(store, runtime)
    kuma = event(dedup_key="k", at=1, source="kuma", source_type="uptime-kuma", labels=labels)
    ingest(store, ids["kuma"], kuma, partition="kuma")
    evaluate(store, runtime, "kuma")
    with store.read() as conn:
        assert conn.execute(sa.select(activations.c.firing_alerts)).scalar() == 2
    _delete_source(store, ids["kuma"], T0 + timedelta(minutes=1))
    ingest(store, ids["am"], event("resolved", dedup_key="a", at=5, labels=labels))
    evaluate(store, runtime)
    assert status_of(store, ids["api"]) == "operational"


KUMA_API = """
  - id: kuma-down
    match: {source: kuma}
    services: [api]
    then: [{set_status: major_outage}]
"""


def _kuma_alert_fired(store, rules: str):
    """Seeded, with `rules` in force and one firing alert of source kuma evaluated."""
    ids = seed(store)
    runtime = load_rules(store, rules)
    kuma = event(dedup_key="k", source="kuma", source_type="uptime-kuma")
    ingest(store, ids["kuma"], kuma, partition="kuma")
    evaluate(store, runtime, "kuma")
    return ids, runtime


def test_deleting_the_only_source_of_an_activations_alerts_ends_it_on_the_clock(store):
    # No resolve can reach those alerts any more: without this the service stayed red until
    # the rule's resolve.timeout, or for ever without one.
    ids, runtime = _kuma_alert_fired(store, KUMA_API)
    assert status_of(store, ids["api"]) == "major_outage"
    gone = T0 + timedelta(minutes=5)
    _delete_source(store, ids["kuma"], gone)
    with store.read() as conn:
        due = conn.execute(sa.select(deadlines.c.kind, deadlines.c.due_at)).all()
    assert [(d.kind, d.due_at) for d in due] == [("rules.tick", gone)]
    assert tick(store, runtime, gone) >= 1
    assert status_of(store, ids["api"]) == "operational"
    with store.read() as conn:
        row = conn.execute(
            sa.select(activations.c.state, activations.c.end_reason, activations.c.ended_at)
        ).one()
        timers = conn.execute(sa.select(deadlines.c.key)).scalars().all()
    assert tuple(row) == ("ended", "resolved", gone)
    assert timers == []


def test_an_orphaned_activation_waits_out_its_resolve_after_like_a_resolve(store):
    ids, runtime = _kuma_alert_fired(store, KUMA_API + "    resolve: {after: 2m}\n")
    gone = T0 + timedelta(minutes=5)
    _delete_source(store, ids["kuma"], gone)
    tick(store, runtime, gone)
    assert status_of(store, ids["api"]) == "major_outage"
    with store.read() as conn:
        assert conn.execute(sa.select(activations.c.state)).scalar() == "resolving"
    assert tick(store, runtime, gone + timedelta(minutes=1)) == 0
    assert status_of(store, ids["api"]) == "major_outage"
    assert tick(store, runtime, gone + timedelta(minutes=2)) >= 1
    assert status_of(store, ids["api"]) == "operational"


def test_an_activation_with_another_sources_alert_firing_is_not_made_due(store):
    ids = seed(store)
    runtime = load_rules(store, GROUPED.replace("{source: am}", "{labels.alertname: Storm}"))
    labels = {"alertname": "Storm"}
    ingest(store, ids["am"], event(dedup_key="a", labels=labels))
    evaluate(store, runtime)
    kuma = event(dedup_key="k", at=1, source="kuma", source_type="uptime-kuma", labels=labels)
    ingest(store, ids["kuma"], kuma, partition="kuma")
    evaluate(store, runtime, "kuma")
    _delete_source(store, ids["kuma"], T0 + timedelta(minutes=5))
    with store.read() as conn:
        assert conn.execute(sa.select(deadlines.c.key)).scalars().all() == []
    assert tick(store, runtime, T0 + timedelta(minutes=5)) == 0
    assert status_of(store, ids["api"]) == "major_outage"


def test_the_daily_guard_corrects_wrong_counts_of_firing_alerts(store):
    from engine.activations.claims import Recount, recount_firing_alerts
    from tests.rules.store_helpers import firing_count, stored_activation

    ids = seed(store)
    am = ids["am"]
    high = stored_activation(store, ids["team"], [(am, "a", True), (am, "b", True)], firing=5)
    stuck = stored_activation(store, ids["team"], [(am, "c", False)], firing=1)
    right = stored_activation(store, ids["team"], [(am, "d", True)], firing=1)
    now = T0 + timedelta(hours=1)
    with store.begin() as conn:
        fixed = recount_firing_alerts(conn, now)
    assert fixed == [Recount(high, 5, 2), Recount(stuck, 1, 0)]
    assert [firing_count(store, a) for a in (high, stuck, right)] == [2, 0, 1]
    with store.read() as conn:
        due = conn.execute(sa.select(deadlines.c.key, deadlines.c.due_at)).all()
    # The one left with no firing alert ends on the clock, as after a source deletion.
    assert [tuple(d) for d in due] == [(f"activation:{stuck}", now)]
    runtime = load_rules(store, API)
    tick(store, runtime, now)
    with store.read() as conn:
        states = dict(conn.execute(sa.select(activations.c.id, activations.c.state)).all())
    assert states == {high: "active", stuck: "ended", right: "active"}
    with store.begin() as conn:
        assert recount_firing_alerts(conn, now) == []


def test_an_effect_that_fails_on_the_clock_is_its_activations(store, monkeypatch, caplog):
    import engine.activations.apply as apply_module

    ids, runtime = _two_waiting_for_the_clock(store)
    real = apply_module._claim

    def claim(conn, ids_, intent):
        if intent.group_key.endswith("poison"):
            raise RuntimeError("a bug")
        return real(conn, ids_, intent)

    monkeypatch.setattr(apply_module, "_claim", claim)
    assert tick(store, runtime, T0 + timedelta(minutes=3)) >= 1
    assert status_of(store, ids["api"]) == "partial_outage"
    assert "taken off the clock" in caplog.text


def test_a_job_that_runs_out_of_time_sets_nothing_aside(store, monkeypatch):
    from rq.timeouts import JobTimeoutException

    ids = seed(store)
    runtime = load_rules(store, API)
    _poisoned(monkeypatch, JobTimeoutException("job exceeded its timeout"))
    ingest(store, ids["am"], event(dedup_key="poison"))
    try:
        evaluate(store, runtime)
    except JobTimeoutException:
        pass
    else:
        raise AssertionError("the timeout must end the job, to be retried")
    with store.read() as conn:
        assert conn.execute(sa.select(alert_events.c.evaluated_at)).scalar() is None


def test_deleting_a_source_waits_for_an_evaluator_re_firing_one_of_its_alerts(pg_store):
    # PostgreSQL only (SQLite runs one writer at a time). The evaluator holds the activation
    # while it re-fires a resolved alert of the source; the deletion must count after it.
    import threading

    from engine.sandbox import DEFAULT_LIMITS
    from engine.tables import alert_sources, utcnow
    from workers.evaluate import _PENDING, _RECORD_OUTCOME, _evaluate_one, _machine

    store = pg_store
    ids = seed(store)
    runtime = load_rules(store, GROUPED.replace("{source: am}", "{labels.alertname: Storm}"))
    storm = {"alertname": "Storm"}
    kuma = {"source": "kuma", "source_type": "uptime-kuma", "labels": storm}
    ingest(store, ids["am"], event(dedup_key="a", labels=storm))
    evaluate(store, runtime)
    ingest(store, ids["kuma"], event(dedup_key="k", at=1, **kuma), partition="kuma")
    evaluate(store, runtime, "kuma")
    ingest(store, ids["kuma"], event("resolved", dedup_key="k", at=2, **kuma), partition="kuma")
    evaluate(store, runtime, "kuma")
    ingest(store, ids["kuma"], event(dedup_key="k", at=3, **kuma), partition="kuma")

    deleted = threading.Event()

    def delete_source() -> None:
        with store.begin() as conn:
            forget_source_alerts(conn, ids["kuma"])
            conn.execute(alert_sources.delete().where(alert_sources.c.id == ids["kuma"]))
        deleted.set()

    deleter = threading.Thread(target=delete_source)
    with rules_runtime(store, runtime).using() as book, store.begin() as conn:
        rows = conn.execute(_PENDING, {"partition": "kuma", "limit": 10}).all()
        ids_, machine = _machine(conn, book, DEFAULT_LIMITS)
        outcomes = [
            {
                "event_id": r.id,
                "at": utcnow(),
                "outcome": _evaluate_one(conn, book, ids_, machine, r),
            }
            for r in rows
        ]
        conn.execute(_RECORD_OUTCOME, outcomes)
        deleter.start()
        assert not deleted.wait(0.5), "the deletion must wait for the evaluator's commit"
    deleter.join()
    with store.read() as conn:
        counts = conn.execute(sa.select(activations.c.firing_alerts)).scalars().all()
    assert counts == [1]  # only `a` fires: kuma's re-fired `k` went with its source
    ingest(store, ids["am"], event("resolved", dedup_key="a", at=5, labels=storm))
    evaluate(store, runtime)
    assert status_of(store, ids["api"]) == "operational"


def test_explaining_an_unmatched_event_reads_the_rules_without_compiling_them(store, monkeypatch):
    # A web process in scaled mode explains events but never evaluates: no engine rulesets.
    import rules.runtime
    from pages.unmatched import RulesInForce, why_unmatched

    ids = seed(store)
    runtime = load_rules(
        store, API.replace("match: {source: am}", "match: {source: am, labels.x: y}")
    )
    ingest(store, ids["am"], event())
    evaluate(store, runtime)
    with store.read() as conn:
        rows = conn.execute(sa.select(alert_events)).all()
    compiled: list[object] = []
    real_book = rules.runtime.RuleBook
    monkeypatch.setattr(rules.runtime, "RuleBook", lambda *a: compiled.append(a) or real_book(*a))
    in_force = RulesInForce()
    why = why_unmatched(store, in_force, "am", "alertmanager", rows)
    assert [r[0] for r in why[rows[0].id].rules] == ["api-5xx"]
    assert compiled == [] and in_force.version == 1
