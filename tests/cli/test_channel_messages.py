"""A team channel's message and its failures, as an operator meets them on a running
`beacon serve` (issue 19, item 4): the Slack text says what is wrong, where, and links to
it; a channel that cannot be reached costs one log line per attempt, with the reason."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.support import RecordingServer, beacon, beacon_env, serve

pytestmark = pytest.mark.e2e

KUMA_DOWN = {
    "heartbeat": {
        "monitorID": 1,
        "status": 0,
        "time": "2026-11-29 12:00:00.000",
        "msg": "timeout of 16000ms exceeded",
        "important": True,
    },
    "monitor": {"id": 1, "name": "Public API", "url": "https://api.example", "type": "http"},
    "msg": "[Public API] [Down] timeout of 16000ms exceeded",
}


def _config(tmp_path: Path, slack_url: str, dead_url: str) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "kuma.yaml").write_text(
        """
version: 1
rules:
  - id: api-down
    match: {source: kuma}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {template: api-outage}
      - notify: {channel: team-slack}
      - notify: {channel: dead-slack}
"""
    )
    config = tmp_path / "beacon.yaml"
    config.write_text(
        f"""
teams: [{{key: platform, name: Platform}}]
services: [{{key: api, name: Public API, team: platform}}]
alert_sources:
  - {{key: kuma, name: Kuma, type: uptime-kuma, team: platform,
     integration_key: kuma-key-0123456789}}
channels:
  - {{key: team-slack, team: platform, type: slack, url: "{slack_url}"}}
  - {{key: dead-slack, team: platform, type: slack, url: "{dead_url}"}}
incident_templates:
  - {{key: api-outage, team: platform, title: API unavailable, message: We are on it.,
     status: investigating, services: {{api: major_outage}}}}
status_pages:
  - {{slug: acme, name: ACME Status, type: public, teams: [platform], services: [api],
     active: true}}
rules: [rules/*.yaml]
"""
    )
    return config


def test_slack_gets_summary_service_and_link_and_a_dead_hook_one_line_per_attempt(
    tmp_path: Path, server: RecordingServer
) -> None:
    data = tmp_path / "data"
    env = {"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"}
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    config = _config(tmp_path, server.url + "/hook", dead)
    applied = beacon(["apply", str(config)], beacon_env(data, env))
    assert applied.returncode == 0, applied.stderr + applied.stdout
    log = tmp_path / "serve.log"
    with serve(data, env=env, log_path=log) as base:
        sent = httpx.post(f"{base}/api/v1/events/kuma-key-0123456789", json=KUMA_DOWN, timeout=10)
        assert sent.status_code == 202
        deadline = time.monotonic() + 30
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.requests, log.read_text()
        text = json.loads(server.requests[0]["body"])["text"]  # type: ignore[arg-type]
        assert "Public API" in text and "api-down" in text
        assert "[Public API] [Down] timeout of 16000ms exceeded" in text
        assert "Incident: API unavailable" in text
        assert f"{base}/p/acme/incidents/" in text
        # The dead hook: retried with backoff (2 s, then 4 s); wait for two attempts.
        deadline = time.monotonic() + 30
        while log.read_text().count("notify.channel failed") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    logged = log.read_text()
    assert "Traceback" not in logged
    failures = [line for line in logged.splitlines() if "notify.channel failed" in line]
    assert len(failures) >= 2
    for line in failures:
        assert "dead-slack" in line and "could not reach 127.0.0.1" in line, line
