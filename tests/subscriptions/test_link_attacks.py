"""Tried as an attacker: a subscriber's links (confirm, manage, unsubscribe) through the real
routes. Their token is the only credential, so it must not reach a log or a cache."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from engine.runtime import Runtime
from tests.support import RecordingServer

from .conftest import BASE_URL, make_site


def test_subscriber_tokens_stay_out_of_the_access_log(
    rt: Runtime, client: TestClient, server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    make_site(rt)
    created = client.post(
        "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/h"}
    ).json()
    token = created["unsubscribe_url"].rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO, logger="beacon.access"):
        for path in (
            created["unsubscribe_url"].removeprefix(BASE_URL),
            f"/p/acme/subscriptions/manage/{token}",
            f"/p/acme/subscriptions/confirm/{token}",
            f"/p/acme//subscriptions/Manage/{token}/",
        ):
            client.get(path)
    lines = [r.getMessage() for r in caplog.records if r.name == "beacon.access"]
    assert len(lines) == 4
    assert all(token not in line for line in lines), lines
    assert any("/subscriptions/manage/<redacted>" in line for line in lines), lines
