"""A rule's `notify` to Slack, Discord and Teams on a running `beacon serve` (issue 15, item
8): the config declares the three channels, an alert fires and resolves, and each tool's
stand-in takes one firing and one resolved message in its own format."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat_standins import ChatTools
from tests.support import beacon, beacon_env, serve

pytestmark = pytest.mark.e2e

RULES = """
version: 1
rules:
  - id: api-down
    match: {source: kuma}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {template: api-outage}
      - notify: {channel: chat-slack}
      - notify: {channel: chat-discord}
      - notify: {channel: chat-teams}
"""


def _kuma(status: int) -> dict[str, Any]:
    return {
        "heartbeat": {
            "monitorID": 1,
            "status": status,
            "time": "2026-11-29 12:00:00.000" if status == 0 else "2026-11-29 12:05:00.000",
            "msg": "timeout of 16000ms exceeded" if status == 0 else "200 - OK",
            "important": True,
        },
        "monitor": {"id": 1, "name": "Public API", "url": "https://api.example", "type": "http"},
        "msg": "[Public API] [Down] timeout" if status == 0 else "[Public API] [Up] 200 - OK",
    }


def _config(tmp_path: Path, url: str) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "kuma.yaml").write_text(RULES)
    config = tmp_path / "beacon.yaml"
    config.write_text(
        f"""
teams: [{{key: platform, name: Platform}}]
services: [{{key: api, name: Public API, team: platform}}]
alert_sources:
  - {{key: kuma, name: Kuma, type: uptime-kuma, team: platform,
     integration_key: kuma-key-0123456789}}
channels:
  - {{key: chat-slack, team: platform, type: slack, url: "{url}/slack/T0/B0/X"}}
  - {{key: chat-discord, team: platform, type: discord, url: "{url}/discord/1/abc"}}
  - {{key: chat-teams, team: platform, type: teams, url: "{url}/teams/webhookb2/x"}}
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


def _wait(tools: ChatTools, count: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while any(len(tools.accepted[t]) < count for t in ("slack", "discord", "teams")):
        assert time.monotonic() < deadline, (dict(tools.accepted), log.read_text()[-3000:])
        time.sleep(0.1)


def test_each_chat_tool_gets_firing_and_resolved_in_its_own_format(tmp_path: Path) -> None:
    tools = ChatTools()
    data = tmp_path / "data"
    env = {"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"}
    applied = beacon(["apply", str(_config(tmp_path, tools.url))], beacon_env(data, env))
    assert applied.returncode == 0, applied.stderr + applied.stdout
    log = tmp_path / "serve.log"
    try:
        with serve(data, env=env, log_path=log) as base:
            intake = f"{base}/api/v1/events/kuma-key-0123456789"
            assert httpx.post(intake, json=_kuma(0), timeout=10).status_code == 202
            _wait(tools, 1, log)
            assert httpx.post(intake, json=_kuma(1), timeout=10).status_code == 202
            _wait(tools, 2, log)
            time.sleep(0.5)  # nothing more comes
    finally:
        tools.close()
    assert not any(tools.refused.values()), dict(tools.refused)
    slack_firing, slack_resolved = tools.accepted["slack"]
    assert slack_firing["blocks"][0]["text"]["text"].startswith(":red_circle: Firing: Public API")
    assert slack_resolved["blocks"][0]["text"]["text"].startswith(":large_green_circle: Resolved")
    assert f"{base}/p/acme/incidents/" in slack_firing["text"]
    (firing,), (resolved,) = (m["embeds"] for m in tools.accepted["discord"])
    assert (firing["color"], resolved["color"]) == (0xD1242F, 0x1A7F37)
    assert firing["url"].startswith(f"{base}/p/acme/incidents/")
    assert "[Public API] [Down] timeout" in firing["description"]
    cards = [m["attachments"][0]["content"] for m in tools.accepted["teams"]]
    assert [c["body"][0]["color"] for c in cards] == ["Attention", "Good"]
    assert cards[0]["actions"][0]["url"].startswith(f"{base}/p/acme/incidents/")
    assert len(tools.accepted["slack"]) == len(tools.accepted["discord"]) == 2
