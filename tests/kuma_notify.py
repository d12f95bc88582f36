"""A running `beacon serve` whose rule notifies team channels when Uptime Kuma says the
Public API is down: the setup the end-to-end tests of team channels share (each test says
which channels there are and what reaches them)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.support import beacon, beacon_env, serve

#: The alert source's integration key in `config`.
KUMA_KEY = "kuma-key-0123456789"

_RULES = """
version: 1
rules:
  - id: api-down
    match: {source: kuma}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {template: api-outage}
"""


def heartbeat(status: int) -> dict[str, Any]:
    """Uptime Kuma's webhook for the Public API monitor going down (0) or up (1)."""
    return {
        "heartbeat": {
            "monitorID": 1,
            "status": status,
            "time": "2026-11-29 12:00:00.000" if status == 0 else "2026-11-29 12:05:00.000",
            "msg": "timeout of 16000ms exceeded" if status == 0 else "200 - OK",
            "important": True,
        },
        "monitor": {"id": 1, "name": "Public API", "url": "https://api.example", "type": "http"},
        "msg": "[Public API] [Down] timeout of 16000ms exceeded"
        if status == 0
        else "[Public API] [Up] 200 - OK",
    }


def config(tmp_path: Path, channels: Mapping[str, tuple[str, str]]) -> Path:
    """`beacon.yaml` (and `rules/kuma.yaml`) in `tmp_path`: team platform's service api on
    the public page acme, the Kuma source, and the rule api-down, which sets api's status,
    opens an incident and notifies each of `channels` (key -> (type, url)) in that order."""
    (tmp_path / "rules").mkdir()
    notify = "".join(f"      - notify: {{channel: {key}}}\n" for key in channels)
    (tmp_path / "rules" / "kuma.yaml").write_text(_RULES + notify)
    declared = "".join(
        f'  - {{key: {key}, team: platform, type: {kind}, url: "{url}"}}\n'
        for key, (kind, url) in channels.items()
    )
    path = tmp_path / "beacon.yaml"
    path.write_text(
        f"""
teams: [{{key: platform, name: Platform}}]
services: [{{key: api, name: Public API, team: platform}}]
alert_sources:
  - {{key: kuma, name: Kuma, type: uptime-kuma, team: platform,
     integration_key: {KUMA_KEY}}}
channels:
{declared}incident_templates:
  - {{key: api-outage, team: platform, title: API unavailable, message: We are on it.,
     status: investigating, services: {{api: major_outage}}}}
status_pages:
  - {{slug: acme, name: ACME Status, type: public, teams: [platform], services: [api],
     active: true}}
rules: [rules/*.yaml]
"""
    )
    return path


@contextlib.contextmanager
def served(tmp_path: Path, channels: Mapping[str, tuple[str, str]]) -> Iterator[tuple[str, Path]]:
    """`beacon apply` of `config(tmp_path, channels)`, then `beacon serve` on it, with hooks on
    loopback allowed; yields the server's base URL and its log file."""
    data = tmp_path / "data"
    env = {"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"}
    applied = beacon(["apply", str(config(tmp_path, channels))], beacon_env(data, env))
    assert applied.returncode == 0, applied.stderr + applied.stdout
    log = tmp_path / "serve.log"
    with serve(data, env=env, log_path=log) as base:
        yield base, log
