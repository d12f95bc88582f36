"""`beacon backup FILE` copies a running embedded Beacon's store online; a Beacon started
on the copy (and the same secret key) serves the same pages and keeps its subscribers and
API keys. In scaled mode the command refuses and names the PostgreSQL procedure."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from engine.db import create_store
from engine.settings import Settings
from engine.tables import subscribers
from tests.conftest import FIXTURES
from tests.support import Served, beacon, beacon_env, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = """
teams: [{key: platform}]
services:
  - {key: api, name: Public API, team: platform}
  - {key: db, name: Database, team: platform}
alert_sources:
  - {key: am, name: Alertmanager, type: alertmanager, team: platform,
     integration_key: backup-test-key-0001}
incident_templates:
  - {key: down, team: platform, title: "API down: {{ event.summary }}", message: Looking.,
     services: {api: major_outage}}
status_pages:
  - {slug: acme, name: ACME Status, type: public, teams: [platform], services: [api, db],
     active: true}
rules: [rules.yaml]
"""
RULES = """version: 1
rules:
  - id: fire
    match: {source: am}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {template: down}
"""
FIRING = (FIXTURES / "alert_sources/alertmanager/firing_single.json").read_bytes()


def _state(url: str) -> dict[str, Any]:
    summary = httpx.get(url + "/p/acme/api/v2/summary.json").json()
    return {
        "status": summary["status"],
        "components": [(c["id"], c["name"], c["status"]) for c in summary["components"]],
        "incidents": [(i["id"], i["name"], i["status"]) for i in summary["incidents"]],
    }


def _subscribers(data: Path) -> list[tuple[Any, ...]]:
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    try:
        with store.read() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.select(
                        subscribers.c.channel,
                        subscribers.c.address,
                        subscribers.c.confirmed,
                        subscribers.c.link_selector,
                    ).order_by(subscribers.c.id)
                )
            ]
    finally:
        store.dispose()


def test_a_restored_backup_serves_the_same_pages_and_keeps_its_subscribers(tmp_path: Path):
    (tmp_path / "beacon.yaml").write_text(CONFIG)
    (tmp_path / "rules.yaml").write_text(RULES)
    data = tmp_path / "data"
    env = beacon_env(data, {"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"})
    applied = beacon(["apply", str(tmp_path / "beacon.yaml")], env)
    assert applied.returncode == 0, applied.stderr
    key = beacon(["apikey", "create", "--admin", "--name", "ops"], env).stdout.strip()
    original = Served(data, env={"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"})
    original.start()
    try:
        for address in ("https://hooks.example.com/a", "https://hooks.example.com/b"):
            made = httpx.post(
                original.url + "/p/acme/subscribe",
                json={"channel": "webhook", "address": address},
            )
            assert made.status_code in (200, 201), made.text
        assert httpx.post(original.url + "/api/v1/events/backup-test-key-0001", content=FIRING)
        wait_for(lambda: _state(original.url)["incidents"] != [], 30, "the incident on the page")
        before = _state(original.url)
        # Online: the server is running (and writing) while the copy is made.
        made = beacon(["backup", str(tmp_path / "beacon.backup")], env)
        assert made.returncode == 0, made.stderr
        assert "backed up" in made.stdout
    finally:
        original.stop()
    kept = _subscribers(data)
    assert len(kept) == 2

    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(tmp_path / "beacon.backup", restored / "beacon.db")
    shutil.copy(data / "secret_key", restored / "secret_key")
    assert _subscribers(restored) == kept
    again = Served(restored)
    again.start()
    try:
        assert _state(again.url) == before
        assert "Public API" in httpx.get(again.url + "/p/acme/").text
        # The API key made before the backup works on the restored Beacon.
        listed = httpx.get(again.url + "/api/v1/pages", headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200 and listed.json()[0]["slug"] == "acme"
    finally:
        again.stop()


def test_backup_refuses_postgresql_and_names_the_procedure(tmp_path: Path):
    env = beacon_env(tmp_path / "data", {"BEACON_DATABASE_URL": "postgresql://x@127.0.0.1/y"})
    made = beacon(["backup", str(tmp_path / "b")], env)
    assert made.returncode == 2
    assert "pg_dump" in made.stderr and "docs/operations.md" in made.stderr


def test_backup_of_a_missing_database_says_so(tmp_path: Path):
    made = beacon(["backup", str(tmp_path / "b")], beacon_env(tmp_path / "nothing"))
    assert made.returncode == 2
    assert "no database" in made.stderr


def test_a_backup_is_readable_by_its_maker_only(tmp_path: Path):
    """A backup holds what the database does (people's addresses, password hashes): it is
    written 0600 wherever it goes (a shared backup directory), not per the umask."""
    env = beacon_env(tmp_path / "data")
    assert beacon(["db", "upgrade"], env).returncode == 0
    shared = tmp_path / "backups"
    shared.mkdir(mode=0o755)
    made = beacon(["backup", str(shared / "beacon.db")], env)
    assert made.returncode == 0, made.stderr
    assert (shared / "beacon.db").stat().st_mode & 0o777 == 0o600
