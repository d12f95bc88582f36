"""Embedded mode end to end: the app's own ticker and worker threads evaluate stored events
through the `evaluate` outbox row, and fire a rule's `for` through its deadline."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from cli import wiring
from engine.tables import alert_events, outbox, utcnow
from tests.rules.helpers import event
from tests.rules.store_helpers import ingest, load_rules, seed, status_of

PAYLOADS = Path(__file__).parent / "fixtures"


def _wait(condition, seconds: float = 30) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_the_embedded_workers_evaluate_events_and_fire_for_deadlines(
    settings, sqlite_store, make_runtime
):
    ids = seed(sqlite_store)
    load_rules(
        sqlite_store,
        """
  - id: api-now
    match: {source: am, labels.alertname: Now}
    services: [api]
    then: [{set_status: partial_outage}]
  - id: web-later
    match: {source: am, labels.alertname: Later}
    services: [web]
    for: 1s
    then: [{set_status: major_outage}]
""",
    )
    now = utcnow()
    rt = make_runtime(settings, store=sqlite_store)
    with TestClient(wiring.app(rt, background=True)):
        ingest(
            sqlite_store,
            ids["am"],
            event(dedup_key="n", labels={"alertname": "Now"}).model_copy(
                update={"received_at": now, "occurred_at": now}
            ),
            event(dedup_key="l", labels={"alertname": "Later"}).model_copy(
                update={"received_at": now, "occurred_at": now}
            ),
        )
        with sqlite_store.begin() as conn:
            conn.execute(outbox.insert().values(kind="evaluate", payload={"partition": "am"}))
        rt.nudge.set()
        assert _wait(lambda: status_of(sqlite_store, ids["api"]) == "partial_outage")
        # `for: 1s` acts through its deadline, one second after the event was received.
        assert _wait(lambda: status_of(sqlite_store, ids["web"]) == "major_outage")
        assert utcnow() >= now + timedelta(seconds=1)


def _fire_rule(store):
    """The seeded world with rule `fire` (Alertmanager's Fire alert sets api down); the
    ids and the `am` source's integration key."""
    ids = seed(store)
    load_rules(
        store,
        """
  - id: fire
    match: {source: am, labels.alertname: Fire, severity: critical}
    services: [api]
    then: [{set_status: major_outage}]
""",
    )
    # The store keeps a digest only: the key is the factory's (`<key>-<team id>-secret`).
    return ids, f"am-{ids['team']}-secret"


def test_a_webhook_sets_and_clears_a_status_through_intake_rules_and_workers(
    settings, sqlite_store, make_runtime
):
    ids, key = _fire_rule(sqlite_store)
    firing = (PAYLOADS / "firing_single.json").read_bytes()
    resolved = (PAYLOADS / "resolved_single.json").read_bytes()
    rt = make_runtime(settings, store=sqlite_store)
    with TestClient(wiring.app(rt, background=True)) as client:
        answer = client.post(f"/api/v1/events/{key}", content=firing)
        assert answer.status_code == 202, answer.text
        assert _wait(lambda: status_of(sqlite_store, ids["api"]) == "major_outage")
        answer = client.post(f"/api/v1/events/{key}", content=resolved)
        assert answer.status_code == 202, answer.text
        assert _wait(lambda: status_of(sqlite_store, ids["api"]) == "operational")
    with sqlite_store.read() as conn:
        outcomes = (
            conn.execute(sa.select(alert_events.c.outcome).order_by(alert_events.c.id))
            .scalars()
            .all()
        )
    assert outcomes[0]["matched"] == ["fire"] and outcomes[1]["matched"] == []


def test_the_events_api_says_what_happened_to_each_alert(settings, sqlite_store, make_runtime):
    """ "What happened to my alert?" end to end: real deliveries, real rules, the outcome the
    evaluator recorded, as `GET /api/v1/alert-sources/{key}/events` shows it."""
    from tests.intake.conftest import api_key

    ids, key = _fire_rule(sqlite_store)
    firing = (PAYLOADS / "firing_single.json").read_bytes()
    other = firing.replace(b'"Fire"', b'"Quiet"')
    assert other != firing
    rt = make_runtime(settings, store=sqlite_store)
    with TestClient(wiring.app(rt, background=True)) as client:
        assert client.post(f"/api/v1/events/{key}", content=firing).status_code == 202
        assert client.post(f"/api/v1/events/{key}", content=other).status_code == 202
        headers = api_key(sqlite_store, "platform")

        def listed() -> list[dict]:
            r = client.get("/api/v1/alert-sources/am/events", headers=headers)
            assert r.status_code == 200, r.text
            return r.json()["events"]

        assert _wait(lambda: all(e["outcome"]["result"] != "pending" for e in listed()))
        quiet, fired = listed()
    assert fired["outcome"]["result"] == "matched" and fired["outcome"]["matched"] == ["fire"]
    assert fired["outcome"]["effects"] == ["fire: acted: api: major_outage"]
    assert "why" not in fired
    assert quiet["outcome"]["result"] == "no_match"
    assert quiet["why"] == {
        "rules_version": 1,
        "rules": [
            {
                "rule": "fire",
                "at": "rules.yaml:4",
                "missed": 'labels.alertname is "Quiet", the rule wants "Fire"',
            }
        ],
        "more": 0,
        "other_sources": 0,
    }
