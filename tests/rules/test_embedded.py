"""Embedded mode end to end: the app's own ticker and worker threads evaluate stored events
through the `evaluate` outbox row, and fire a rule's `for` through its deadline."""

from __future__ import annotations

import time
from datetime import timedelta

from starlette.testclient import TestClient

from engine.tables import outbox, utcnow
from pages.app import create_app
from tests.rules.helpers import event
from tests.rules.store_helpers import ingest, load_rules, seed, status_of
from workers.queue import Queues
from workers.runtime import Runtime, uninstall


def _wait(condition, seconds: float = 30) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_the_embedded_workers_evaluate_events_and_fire_for_deadlines(settings, sqlite_store):
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
    rt = Runtime(settings, sqlite_store, Queues.from_settings(settings))
    try:
        with TestClient(create_app(rt, background=True)):
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
    finally:
        uninstall()
