"""An embedded `beacon serve` SIGKILLed while Alertmanager deliveries pour in, then started
again: every delivery it answered 202 is in the log and evaluated, deliveries the tool
retried are not stored twice, and once every alert has resolved every service is back to
operational with no activation, claim or outbox row left behind.

The client is a tool that retries until it gets an answer (what Alertmanager does), so a
delivery cut off by the kill is sent again after the restart."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Served

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "crash-test-key-0123456789"

CONFIG = f"""
teams:
  - {{key: platform, name: Platform}}
services:
  - {{key: api, name: API, team: platform}}
  - {{key: db, name: DB, team: platform}}
  - {{key: web, name: Web, team: platform}}
alert_sources:
  - {{key: am, name: AM, type: alertmanager, team: platform, integration_key: {KEY}}}
incident_templates:
  - {{key: storm, team: platform, title: Storm, message: x, resolve_message: over,
      services: {{api: major_outage}}}}
rules: [rules.yaml]
"""

RULES = """version: 1
rules:
  - id: storm
    match: {labels.alertname: Storm}
    group_by: [labels.alertname]
    services: [api]
    then: [{set_status: major_outage}, {open_incident: {template: storm}}]
  - id: by-service
    match: {labels.service: {exists: true}}
    service_from: labels.service
    then: [{set_status: partial_outage}]
"""


def delivery(i: int, status: str, kind: str) -> dict[str, Any]:
    labels = {"alertname": kind, "instance": f"h{i}"}
    if kind == "Svc":
        labels["service"] = ("db", "web")[i % 2]
    at = f"{(i // 60) % 60:02d}:{i % 60:02d}"
    ends = f"2026-11-29T12:{at}Z" if status == "resolved" else "0001-01-01T00:00:00Z"
    return {
        "version": "4",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"alert {i}"},
                "startsAt": f"2026-11-29T10:{at}Z",
                "endsAt": ends,
                "fingerprint": f"fp{i}",
            }
        ],
    }


async def send(
    beacon: Served, items: list[tuple[int, str, str]], accepted: set[tuple[str, str]]
) -> None:
    """Post every delivery, each until it is answered 202 (retrying through the kill)."""
    gate = asyncio.Semaphore(20)
    async with httpx.AsyncClient(timeout=10) as client:

        async def post(i: int, status: str, kind: str) -> None:
            while True:
                async with gate:
                    try:
                        answer = await client.post(
                            f"{beacon.url}/api/v1/events/{KEY}", json=delivery(i, status, kind)
                        )
                    except httpx.HTTPError:
                        answer = None
                if answer is not None and answer.status_code == 202:
                    assert len(answer.json()["events"]) == 1
                    accepted.add((f"fp{i}", status))
                    return
                assert answer is None or answer.status_code >= 500, answer.text
                await asyncio.sleep(0.2)

        await asyncio.gather(*(post(*item) for item in items))


async def kill_and_restart(beacon: Served, when: int, accepted: set[tuple[str, str]]) -> int:
    """SIGKILL once `when` deliveries have been answered, start again; how many were."""
    while len(accepted) < when:
        await asyncio.sleep(0.01)
    answered = len(accepted)
    beacon.kill()
    await asyncio.to_thread(beacon.start)
    return answered


def settled(db: Path, timeout: float = 60) -> sqlite3.Connection:
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(db)
        waiting = conn.execute(
            "SELECT (SELECT count(*) FROM alert_events WHERE evaluated_at IS NULL)"
            " + (SELECT count(*) FROM outbox WHERE done_at IS NULL)"
        ).fetchone()[0]
        if not waiting or time.monotonic() > deadline:
            return conn
        conn.close()
        time.sleep(0.5)


def test_every_answered_delivery_survives_a_sigkill_and_the_end_state_is_right(
    tmp_path: Path,
) -> None:
    (tmp_path / "beacon.yaml").write_text(CONFIG)
    (tmp_path / "rules.yaml").write_text(RULES)
    config = str(tmp_path / "beacon.yaml")
    beacon = Served(tmp_path / "data", "--config", config, log_path=tmp_path / "serve.log")
    beacon.start()
    rng = random.Random(3)
    alerts = [(i, rng.choice(["Storm", "Svc", "None"])) for i in range(300)]
    firing = [(i, "firing", kind) for i, kind in alerts]
    resolved = [(i, "resolved", kind) for i, kind in alerts]
    rng.shuffle(firing)
    rng.shuffle(resolved)
    accepted: set[tuple[str, str]] = set()

    async def run() -> list[int]:
        killed = []
        for phase, items in enumerate((firing, resolved)):
            when = 300 * phase + rng.randint(60, 240)
            _, answered = await asyncio.gather(
                send(beacon, items, accepted), kill_and_restart(beacon, when, accepted)
            )
            killed.append(answered)
        return killed

    try:
        killed = asyncio.run(run())
        conn = settled(tmp_path / "data" / "beacon.db")
    finally:
        beacon.stop()
    # The kills came while deliveries were being answered, not before or after them all.
    assert 0 < killed[0] < 300 and 300 < killed[1] < 600, killed

    def rows(sql: str) -> list[Any]:
        return conn.execute(sql).fetchall()

    stored = rows("SELECT dedup_key, status FROM alert_events")
    assert accepted <= set(stored)  # every 202 is a committed event
    assert len(stored) == len(set(stored)) == 600  # retries stored nothing twice
    assert rows("SELECT count(*) FROM alert_events WHERE evaluated_at IS NULL") == [(0,)]
    assert rows("SELECT kind, error FROM outbox WHERE done_at IS NULL") == []
    assert sorted(rows("SELECT key, status FROM services")) == [
        ("api", "operational"),
        ("db", "operational"),
        ("web", "operational"),
    ]
    assert rows("SELECT state, sum(firing_alerts) FROM activations GROUP BY state") == [
        ("ended", 0)
    ]
    assert rows("SELECT count(*) FROM claims WHERE released_at IS NULL") == [(0,)]
    assert rows("SELECT DISTINCT status FROM incidents") == [("resolved",)]
    results = dict(
        rows(
            "SELECT status || ' ' || json_extract(outcome, '$.result'), count(*)"
            " FROM alert_events GROUP BY 1"
        )
    )
    matching = sum(1 for _, kind in alerts if kind != "None")
    assert results == {
        "firing matched": matching,
        "firing no_match": 300 - matching,
        "resolved applied": matching,
        "resolved no_match": 300 - matching,
    }
    assert "Traceback" not in beacon.log_path.read_text()
