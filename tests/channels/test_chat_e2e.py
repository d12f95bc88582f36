"""A rule's `notify` to Slack, Discord and Teams on a running `beacon serve` (issue 15, item
8): the config declares the three channels, an alert fires and resolves, and each tool's
stand-in takes one firing and one resolved message in its own format."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests import kuma_notify
from tests.chat_standins import ChatTools

pytestmark = pytest.mark.e2e


def _wait(tools: ChatTools, count: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while any(len(tools.accepted[t]) < count for t in ("slack", "discord", "teams")):
        assert time.monotonic() < deadline, (dict(tools.accepted), log.read_text()[-3000:])
        time.sleep(0.1)


def test_each_chat_tool_gets_firing_and_resolved_in_its_own_format(tmp_path: Path) -> None:
    tools = ChatTools()
    channels = {
        "chat-slack": ("slack", f"{tools.url}/slack/T0/B0/X"),
        "chat-discord": ("discord", f"{tools.url}/discord/1/abc"),
        "chat-teams": ("teams", f"{tools.url}/teams/webhookb2/x"),
    }
    try:
        with kuma_notify.served(tmp_path, channels) as (base, log):
            intake = f"{base}/api/v1/events/{kuma_notify.KUMA_KEY}"
            down, up = kuma_notify.heartbeat(0), kuma_notify.heartbeat(1)
            assert httpx.post(intake, json=down, timeout=10).status_code == 202
            _wait(tools, 1, log)
            assert httpx.post(intake, json=up, timeout=10).status_code == 202
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
