"""A team channel's message and its failures, as an operator meets them on a running
`beacon serve` (issue 19, item 4): the Slack text says what is wrong, where, and links to
it; a channel that cannot be reached costs one log line per attempt, with the reason."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests import kuma_notify
from tests.conftest import free_port
from tests.support import RecordingServer

pytestmark = pytest.mark.e2e


def test_slack_gets_summary_service_and_link_and_a_dead_hook_one_line_per_attempt(
    tmp_path: Path, server: RecordingServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    channels = {"team-slack": ("slack", server.url + "/hook"), "dead-slack": ("slack", dead)}
    with kuma_notify.served(tmp_path, channels) as (base, log):
        intake = f"{base}/api/v1/events/{kuma_notify.KUMA_KEY}"
        sent = httpx.post(intake, json=kuma_notify.heartbeat(0), timeout=10)
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
