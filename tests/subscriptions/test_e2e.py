"""End to end on a real `beacon serve`: the confirmation travels outbox -> embedded worker ->
SendGrid stand-in, and its link confirms; a user made with `beacon user create` signs in."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from engine import migrate
from engine.db import create_store
from engine.settings import Settings
from tests.support import RecordingServer, beacon, beacon_env, serve

from .conftest import make_site, sent_json


@pytest.mark.e2e
def test_a_subscription_is_confirmed_through_a_running_server(
    tmp_path: Path, server: RecordingServer
) -> None:
    data_dir = tmp_path / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    migrate.upgrade(store)
    make_site(SimpleNamespace(store=store))  # type: ignore[arg-type]
    store.dispose()
    env = {
        "BEACON_SENDGRID_API_KEY": "SG.test",
        "BEACON_SENDGRID_API_URL": server.url,
        "BEACON_BASE_URL": "http://status.test",
    }
    with serve(data_dir, env=env) as base:
        answer = httpx.post(
            f"{base}/p/acme/subscribe",
            data={"channel": "email", "address": "eve@example.com"},
            timeout=10,
        )
        assert answer.status_code == 202
        mails = _wait_for_mail(server)
        text = mails[0]["content"][0]["value"]
        match = re.search(r"http://status\.test(/p/acme/subscriptions/confirm/[\w-]+)", text)
        assert match, text
        shown = httpx.get(base + match.group(1), timeout=10)
        assert shown.status_code == 200 and "Confirm subscription" in shown.text
        confirmed = httpx.post(base + match.group(1), timeout=10)
        assert confirmed.status_code == 200 and "Subscription confirmed" in confirmed.text


def _wait_for_mail(server: RecordingServer, timeout: float = 30) -> list[dict[str, Any]]:
    # Waiting for the worker, not timing it: the deadline only bounds a broken run.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mails = sent_json(server)
        if mails:
            return mails
        time.sleep(0.1)
    raise AssertionError("no confirmation mail reached the SendGrid stand-in")


@pytest.mark.e2e
def test_a_user_made_with_the_cli_signs_in_on_a_running_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = beacon_env(data_dir, {"BEACON_USER_PASSWORD": "s3cret-enough"})
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    migrate.upgrade(store)
    store.dispose()
    made = beacon(["user", "create", "ana@acme.test", "--role", "stakeholder"], env)
    assert made.returncode == 0, made.stderr
    with serve(data_dir) as base, httpx.Client(base_url=base, timeout=10) as client:
        form = client.get("/login").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = client.post(
            "/login",
            data={"email": "ana@acme.test", "password": "s3cret-enough", "csrf": csrf},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert "ana@acme.test" in client.get("/login").text


CONFIG = """
teams:
  - {key: platform}
services:
  - {key: api, name: Public API, team: platform}
  - {key: db, name: Database, team: platform}
status_pages:
  - slug: acme
    name: ACME Status
    type: public
    teams: [platform]
    services: [api, db]
    active: true
"""


@pytest.mark.e2e
def test_an_incident_opened_over_the_admin_api_reaches_a_webhook_subscriber(
    tmp_path: Path, server: RecordingServer
) -> None:
    import json

    import sqlalchemy as sa
    from standardwebhooks import Webhook

    from engine.tables import services

    data_dir = tmp_path / "data"
    config = tmp_path / "beacon.yaml"
    config.write_text(CONFIG)
    env = beacon_env(data_dir)
    applied = beacon(["apply", str(config)], env)
    assert applied.returncode == 0, applied.stderr
    made = beacon(["apikey", "create", "--admin", "--name", "e2e"], env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[0]
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    with store.read() as conn:
        api_id = conn.execute(sa.select(services.c.id).where(services.c.key == "api")).scalar()
    store.dispose()

    extra = {"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"}
    with serve(data_dir, env=extra) as base, httpx.Client(base_url=base, timeout=10) as client:
        subscribed = client.post(
            "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/hook"}
        )
        assert subscribed.status_code == 201, subscribed.text
        secret = subscribed.json()["signing_secret"]
        opened = client.post(
            "/api/v1/incidents",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "team": "platform",
                "title": "API down",
                "message": "We are investigating.",
                "impacts": {str(api_id): "major_outage"},
            },
        )
        assert opened.status_code in (200, 201), opened.text
        request = _wait_for(server, b'"incident"')
    body = json.loads(request["body"])  # type: ignore[arg-type]
    assert body["incident"]["name"] == "API down"
    assert body["page"]["status_indicator"] == "critical"
    headers = request["headers"]
    assert isinstance(headers, dict)
    # What docs/subscriptions.md shows a receiver doing, with the same library.
    assert Webhook(secret).verify(request["body"], headers)["incident"]["name"] == "API down"  # type: ignore[arg-type]


def _wait_for(server: RecordingServer, marker: bytes, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in list(server.requests):
            if marker in request["body"]:  # type: ignore[operator]
                return request
        time.sleep(0.1)
    raise AssertionError(f"nothing with {marker!r} reached the stand-in")
