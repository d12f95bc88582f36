"""End to end: a real `beacon serve`, and a real Prometheus Alertmanager posting to it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from engine.db import create_store
from engine.migrate import upgrade
from engine.settings import Settings
from tests.conftest import FIXTURES, ROOT, free_port, need
from tests.intake.conftest import add_source, add_team, events_in
from tests.support import beacon_env, serve, stop, wait_for, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")


def prepared(tmp_path: Path, **source: object) -> tuple[Path, str]:
    """A data directory with a team and an Alertmanager source; returns it and the key."""
    data_dir = tmp_path / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    upgrade(store)
    team = add_team(store, "platform")
    _, key = add_source(store, team, "am", type="alertmanager", **source)
    store.dispose()
    return data_dir, key


@dataclass
class Server:
    url: str
    data_dir: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    data_dir, key = prepared(tmp_path)
    with serve(data_dir) as url:
        yield Server(url, data_dir), key


def test_a_real_server_stores_a_real_fixture_and_answers_a_retry_alike(
    server: tuple[Server, str],
) -> None:
    srv, key = server
    body = (FIXTURES / "alert_sources/alertmanager/firing_single.json").read_bytes()
    first = httpx.post(f"{srv.url}/api/v1/events/{key}", content=body)
    again = httpx.post(f"{srv.url}/api/v1/events/{key}", content=body)
    assert first.status_code == again.status_code == 202, first.text
    assert first.json()["events"] == again.json()["events"]
    [row] = events_in(srv.data_dir)
    assert row.status == "firing" and row.labels["alertname"] == "Fire"


def test_integration_keys_never_reach_the_servers_logs(tmp_path: Path) -> None:
    data_dir, key = prepared(tmp_path)
    port = free_port()
    log_path = tmp_path / "serve.log"
    # -v: Beacon's access log at INFO, next to uvicorn's own logging.
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "-v", "serve", "--port", str(port)],
            env=beacon_env(data_dir),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz")
        body = (FIXTURES / "alert_sources/alertmanager/firing_single.json").read_bytes()
        answers = [
            httpx.post(f"{url}/api/v1/events/{key}", content=body).status_code,
            httpx.post(f"{url}/api/v1/events/{key}", content=b"{broken").status_code,
            httpx.post(f"{url}/api/v1/events/{key}x-unknown", content=body).status_code,
            httpx.get(f"{url}/api/v1/events/{key}?a=b").status_code,
            httpx.post(f"{url}/api/v1/events/{key}", content=b"x" * (2 * 1024 * 1024)).status_code,
        ]
    finally:
        stop(proc, timeout=3)
    assert answers == [202, 400, 404, 400, 413]
    log_text = log_path.read_text(errors="replace")
    assert log_text.count("/api/v1/events/<redacted>") >= 5, log_text
    assert key not in log_text


def alertmanager_config(path: Path, beacon_url: str, key: str) -> Path:
    path.write_text(
        f"""
route:
  receiver: beacon
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: beacon
    webhook_configs:
      - url: {beacon_url}/api/v1/events/{key}
        send_resolved: true
"""
    )
    return path


@pytest.fixture
def alertmanager(tmp_path: Path, server: tuple[Server, str]) -> Iterator[str]:
    need(ALERTMANAGER.exists(), "prometheus-alertmanager is not installed (apt-get install it)")
    srv, key = server
    port = free_port()
    config = alertmanager_config(tmp_path / "alertmanager.yml", srv.url, key)
    log = open(tmp_path / "alertmanager.log", "wb")
    proc = subprocess.Popen(
        [
            str(ALERTMANAGER),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 30, "alertmanager to start")
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_alertmanager_delivers_a_firing_alert_and_its_resolve(
    alertmanager: str, server: tuple[Server, str]
) -> None:
    srv, _key = server
    start = datetime.now(UTC) - timedelta(seconds=5)
    alert = {
        "labels": {"alertname": "BeaconE2E", "service": "db", "severity": "critical"},
        "annotations": {"summary": "Database is down"},
        "startsAt": start.isoformat(),
    }
    posted = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert])
    assert posted.status_code == 200, posted.text
    wait_for(lambda: len(events_in(srv.data_dir)) >= 1, 30, "the firing event")
    [fired] = events_in(srv.data_dir)
    assert fired.status == "firing" and fired.labels["service"] == "db"
    assert fired.summary == "Database is down"

    alert["endsAt"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    assert httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert]).status_code == 200
    wait_for(
        lambda: any(r.status == "resolved" for r in events_in(srv.data_dir)), 30, "the resolve"
    )
    resolved = [r for r in events_in(srv.data_dir) if r.status == "resolved"]
    assert resolved[0].dedup_key == fired.dedup_key
