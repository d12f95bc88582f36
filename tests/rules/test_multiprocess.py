"""Two `beacon serve` and two `beacon worker` processes on real PostgreSQL and Redis: an
event log arrives as Alertmanager webhooks through both servers, the workers evaluate it,
and one worker is SIGKILLed in the middle of a batch. The result must equal a
single-process replay of the same stored log (`config.replay`, what `beacon rules test`
runs)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from config.replay import replay
from config.world import world_from_config
from engine import migrate, vault
from engine.activations import Claim, Release
from engine.activations.lookups import Ids, event_from_row
from engine.db import create_store
from engine.models import AlertEvent, EventStatus
from engine.settings import Settings
from engine.tables import (
    activations,
    alert_events,
    alert_sources,
    claims,
    services,
    teams,
)
from rules.runtime import RuleBook
from rules.validate import check
from tests.conftest import REDIS_URL, ROOT
from tests.rules.helpers import T0
from tests.support import serve
from workers.evaluate import publish_rules

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

RULES = """version: 1
rules:
  - id: am-alert
    match: {source: am, labels.alertname: {in: [A, B]}}
    service_from: labels.service
    then: [{set_status: partial_outage}]
  - id: prom-down
    match: {source: prom}
    service_from: labels.service
    continue: true
    then: [{set_status: major_outage}]
  - id: grouped
    match: {labels.alertname: C}
    group_by: [labels.service]
    service_from: labels.service
    then: [{set_status: degraded}]
"""
SERVICES = [f"s{i}" for i in range(12)]
SOURCES = {"am": "alertmanager", "prom": "alertmanager"}


def _log(count: int) -> list[AlertEvent]:
    rng = random.Random(42)
    alerts = {
        (source, f"{source}-{i}"): (rng.choice(SERVICES), rng.choice("ABC"))
        for source in SOURCES
        for i in range(60)
    }
    events = []
    for i in range(count):
        (source, dedup), (service, name) = rng.choice(sorted(alerts.items()))
        at = T0 + timedelta(seconds=i)
        events.append(
            AlertEvent(
                id=str(i + 1),
                source=source,
                source_type=SOURCES[source],
                dedup_key=dedup,
                status=EventStatus.FIRING if rng.random() < 0.6 else EventStatus.RESOLVED,
                labels={"service": service, "alertname": name},
                occurred_at=at,
                received_at=at,
            )
        )
    return events


def _seed(store) -> None:
    with store.begin() as conn:
        team = conn.execute(teams.insert().values(key="platform").returning(teams.c.id)).scalar()
        for key in SERVICES:
            conn.execute(services.insert().values(team_id=team, key=key, name=key))
        for key, kind in SOURCES.items():
            conn.execute(
                alert_sources.insert().values(
                    team_id=team,
                    key=key,
                    name=key,
                    type=kind,
                    key_digest=vault.of(conn).digest(f"mp-{key}-key"),
                )
            )


def _alert(event: AlertEvent) -> dict[str, object]:
    """The Alertmanager webhook alert that the adapter turns back into `event`."""
    when = event.occurred_at.isoformat().replace("+00:00", "Z")
    firing = event.status == EventStatus.FIRING
    return {
        "status": str(event.status),
        "labels": {**event.labels, "severity": "critical"},
        "annotations": {},
        "startsAt": when if firing else "2026-10-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if firing else when,
        "generatorURL": "",
        "fingerprint": event.dedup_key,
    }


def _post_log(urls: list[str], events: list[AlertEvent]) -> None:
    """Deliver the log in order, 20 events at a time, one webhook per source, alternating
    between the `beacon serve` processes."""
    turn = 0
    for start in range(0, len(events), 20):
        block = events[start : start + 20]
        for source in SOURCES:
            alerts = [_alert(e) for e in block if e.source == source]
            if not alerts:
                continue
            body = {"version": "4", "status": "firing", "receiver": "beacon", "alerts": alerts}
            answer = httpx.post(f"{urls[turn % 2]}/api/v1/events/mp-{source}-key", json=body)
            assert answer.status_code == 202, answer.text
            turn += 1


def _stored_log(store) -> list[AlertEvent]:
    """The event log as the intake stored it, in id order."""
    with store.read() as conn:
        ids = Ids(conn)
        rows = conn.execute(sa.select(alert_events).order_by(alert_events.c.id)).all()
        return [event_from_row(row, ids) for row in rows]


def _expected(events: list[AlertEvent]) -> set[tuple[str, str, str, str]]:
    world = world_from_config(
        {
            "teams": [{"key": "platform"}],
            "services": [{"key": s} for s in SERVICES],
            "alert_sources": [{"key": k, "type": t} for k, t in SOURCES.items()],
        },
        "test",
    )
    book = RuleBook(check({"rules.yaml": RULES}, world.known()), 1)
    open_claims: set[tuple[str, str, str, str]] = set()
    for intent in replay(book, world, events):
        if isinstance(intent, Claim):
            open_claims.add((intent.rule_id, intent.group_key, intent.service, str(intent.status)))
        elif isinstance(intent, Release):
            key = (intent.rule_id, intent.group_key, intent.service)
            open_claims = {c for c in open_claims if c[:3] != key}
    return open_claims


#: Every process's (and the seeding store's) secret key: integration key digests depend on it.
SECRET = "multiprocess-test-secret-" + "k" * 32


def _worker(url: str, prefix: str, name: str, data_dir: str, log) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BEACON_DATABASE_URL": f"{url}?application_name={name}",
        "BEACON_REDIS_URL": REDIS_URL,
        "BEACON_REDIS_PREFIX": prefix,
        "BEACON_SECRET_KEY": SECRET,
        "BEACON_DATA_DIR": data_dir,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _unevaluated(store) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(alert_events.c.evaluated_at.is_(None))
            ).scalar_one()
        )


def _kill_one_mid_batch_then_finish(store, workers: dict[str, subprocess.Popen[bytes]]) -> None:
    # Kill the first worker seen holding a partition's lock: it is inside a batch's
    # transaction, with events read and effects half-written.
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline:
        with store.read() as conn:
            holder = conn.execute(
                sa.text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND a.application_name IN ('w1', 'w2') LIMIT 1"
                )
            ).scalar()
        if holder:
            workers[holder].send_signal(signal.SIGKILL)
            workers[holder].wait()
            killed = holder
        else:
            time.sleep(0.01)
    assert killed is not None, "no worker was ever seen inside a batch"
    assert _unevaluated(store), "the kill came too late to interrupt a batch"
    # The survivor (and the lease on the dead worker's outbox rows) finish the log.
    deadline = time.monotonic() + 150
    while _unevaluated(store) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _unevaluated(store) == 0, "events were lost with the killed worker"


def test_two_serves_and_two_workers_with_one_killed_mid_batch_equal_a_single_process_replay(
    pg_url, redis_prefix, tmp_path
):
    # The processes' secret key: the seeded sources' key digests are made under it.
    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path),
            "BEACON_DATABASE_URL": pg_url,
            "BEACON_SECRET_KEY": SECRET,
        }
    )
    store = create_store(settings)
    try:
        _run_and_compare(store, pg_url, redis_prefix, tmp_path)
    finally:
        # A failed run must not leave the store's pooled connections to the garbage
        # collector, where their warning would fail whichever test runs next.
        store.dispose()


def _run_and_compare(store, pg_url: str, redis_prefix: str, tmp_path) -> None:
    migrate.upgrade(store)
    events = _log(1200)
    publish_rules(store, {"rules.yaml": RULES}, None)
    _seed(store)

    scaled = {
        "BEACON_DATABASE_URL": pg_url,
        "BEACON_REDIS_URL": REDIS_URL,
        "BEACON_REDIS_PREFIX": redis_prefix,
        "BEACON_SECRET_KEY": SECRET,
    }
    with contextlib.ExitStack() as stack:
        urls = [
            stack.enter_context(
                serve(tmp_path / name, env=scaled, log_path=tmp_path / f"{name}.log")
            )
            for name in ("s1", "s2")
        ]
        # The whole log arrives before any worker runs, so the first batches are long.
        _post_log(urls, events)
        workers = {}
        for name in ("w1", "w2"):
            log = stack.enter_context(open(tmp_path / f"{name}.log", "wb"))  # noqa: SIM115
            workers[name] = _worker(pg_url, redis_prefix, name, str(tmp_path / name), log)
            stack.callback(_stop, workers[name])
        _kill_one_mid_batch_then_finish(store, workers)

    with store.read() as conn:
        rows = conn.execute(
            sa.select(claims.c.rule_id, activations.c.group_key, services.c.key, claims.c.status)
            .join(activations, activations.c.id == claims.c.activation_id)
            .join(services, services.c.id == claims.c.service_id)
            .where(claims.c.released_at.is_(None))
        ).all()
        statuses = dict(conn.execute(sa.select(services.c.key, services.c.status)).all())
        open_per_group = conn.execute(
            sa.select(activations.c.rule_id, activations.c.group_key, sa.func.count())
            .where(activations.c.state != "ended")
            .group_by(activations.c.rule_id, activations.c.group_key)
            .having(sa.func.count() > 1)
        ).all()
    log = _stored_log(store)
    assert len(log) == len(events)
    expected = _expected(log)
    assert {tuple(r) for r in rows} == expected
    assert len(rows) == len(expected), "a claim was written twice"
    assert open_per_group == [], "two open activations for one group"
    worst = {}
    order = ["operational", "degraded", "partial_outage", "major_outage"]
    for _rule, _group, service, status in expected:
        if order.index(status) > order.index(worst.get(service, "operational")):
            worst[service] = status
    assert statuses == {s: worst.get(s, "operational") for s in SERVICES}
