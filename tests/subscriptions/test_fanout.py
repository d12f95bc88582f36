"""Fan-out of updates to subscribers: bounded jobs, each delivery once, failures handled."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.runtime import Runtime, install
from engine.security import new_token
from engine.tables import deliveries, incident_updates, subscribers
from tests.support import RecordingServer
from workers.dispatch import dispatch_once
from workers.fanout import handle_incident_update

from .conftest import Site, emails, make_site, open_incident, sent_json, settings_for

SUBSCRIBERS = 1000
WEBHOOKS = 200


@pytest.fixture(params=["sqlite", "postgres"])
def any_rt(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
) -> Runtime:
    extra = {}
    if request.param == "postgres":
        extra["BEACON_DATABASE_URL"] = request.getfixturevalue("pg_url")
    return install(make_runtime(settings_for(tmp_path, server, **extra)))


def add_subscribers(rt: Runtime, site: Site, server: RecordingServer) -> None:
    rows: list[dict[str, Any]] = []
    for n in range(SUBSCRIBERS):
        webhook = n < WEBHOOKS
        rows.append(
            {
                "page_id": site.page_id,
                "channel": "webhook" if webhook else "email",
                "address": f"{server.url}/hook/{n}" if webhook else f"user{n}@example.com",
                "confirmed": True,
                "link_selector": new_token(16),
                "webhook_secret": "whsec_test" if webhook else None,
            }
        )
    with rt.store.begin() as conn:
        conn.execute(subscribers.insert(), rows)


def _notify_jobs(rt: Runtime) -> int:
    return int(rt.queues.queue("beacon-notify").count)


def test_an_update_reaches_1000_subscribers_once_each_with_a_bounded_number_of_jobs(
    any_rt: Runtime, server: RecordingServer
) -> None:
    rt = any_rt
    site = make_site(rt)
    add_subscribers(rt, site, server)
    open_incident(rt, site)
    with rt.store.read() as conn:
        update_id = conn.execute(sa.select(sa.func.max(incident_updates.c.id))).scalar_one()

    dispatch_once(rt)
    # One job for the incident update and one for the component change, not one per subscriber.
    assert _notify_jobs(rt) == 2

    # The handler also runs a second time, concurrently with the worker's run.
    second = threading.Thread(target=handle_incident_update, args=(rt, [{"update_id": update_id}]))
    second.start()
    rt.queues.worker().work(burst=True, logging_level="WARNING")
    second.join()
    handle_incident_update(rt, [{"update_id": update_id}])  # and once more afterwards

    to = Counter(e.to for e in emails(server))
    assert len(to) == SUBSCRIBERS - WEBHOOKS and set(to.values()) == {1}
    # SendGrid gets requests of up to 1,000 personalizations, not one per person (two when
    # the concurrent run claimed part of the batch first).
    requests = [m for m in sent_json(server) if "personalizations" in m]
    assert len(requests) <= 2
    hooks = Counter(str(r["path"]) for r in server.requests if str(r["path"]).startswith("/hook/"))
    # Each webhook: the incident, and the component's change (webhooks hear every change).
    assert len(hooks) == WEBHOOKS and set(hooks.values()) == {2}
    with rt.store.read() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.status, deliveries.c.attempts, deliveries.c.last_error)
        ).all()
    assert len(rows) == SUBSCRIBERS + WEBHOOKS
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}, [
        r for r in rows if r.attempts > 1
    ][:3]
