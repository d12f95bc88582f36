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
        confirmed = httpx.get(base + match.group(1), timeout=10)
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
