"""Redis as a dependency that may fail: a real `beacon serve` in scaled mode (PostgreSQL and
a `redis-server` of the test's own) keeps serving pages and taking webhooks while Redis
refuses connections or accepts them and never answers, says so on `/readyz`, and drains
its outbox when Redis returns."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engine import migrate
from engine.db import create_store
from engine.settings import Settings
from tests.conftest import FIXTURES, need
from tests.support import RedisServer, SilentServer, beacon, serve, wait_for, worker

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

CONFIG = """
teams:
  - {key: platform, name: Platform}
services:
  - {key: api, name: Public API, team: platform}
alert_sources:
  - {key: am, name: Alertmanager, type: alertmanager, team: platform,
     integration_key: reliability-test-key-0001, rate_limit: 100/s}
status_pages:
  - {slug: acme, name: ACME Status, type: public, teams: [platform], services: [api],
     active: true}
rules: [rules.yaml]
"""

RULES = """
version: 1
rules:
  - id: fire
    match: {source: am, labels.alertname: Fire}
    services: [api]
    then:
      - set_status: major_outage
"""

INTAKE = "/api/v1/events/reliability-test-key-0001"
FIRING = (FIXTURES / "alert_sources/alertmanager/firing_single.json").read_bytes()


@dataclass
class Scaled:
    data: Path
    env: dict[str, str]


def scaled(tmp_path: Path, pg_url: str, redis_url: str) -> Scaled:
    """A migrated PostgreSQL database with the config applied, and the environment of a
    scaled Beacon on `redis_url`."""
    need(_has_redis_server(), "redis-server is not installed")
    data = tmp_path / "data"
    env = {
        "BEACON_DATABASE_URL": pg_url,
        "BEACON_REDIS_URL": redis_url,
        "BEACON_REDIS_PREFIX": f"rel-{secrets.token_hex(4)}:",
        "BEACON_SECRET_KEY": secrets.token_hex(16),
    }
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data), **env}))
    migrate.upgrade(store)
    store.dispose()
    (tmp_path / "beacon.yaml").write_text(CONFIG)
    (tmp_path / "rules.yaml").write_text(RULES)
    from tests.support import beacon_env

    applied = beacon(["apply", str(tmp_path / "beacon.yaml")], beacon_env(data, env))
    assert applied.returncode == 0, applied.stderr
    return Scaled(data, env)


def _has_redis_server() -> bool:
    import shutil

    return shutil.which("redis-server") is not None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    need(_has_redis_server(), "redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def timed_get(client: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = client.get(path)
    return answer, time.monotonic() - started


def assert_carries_on_without_redis(client: httpx.Client, url: str) -> None:
    """Pages 200 (from the store), the intake 202, `/readyz` 503 naming Redis; and while
    one request waits for Redis, the event loop answers others."""
    for path in ("/p/acme/", "/p/acme/api/v2/summary.json", "/p/acme/history"):
        answer, took = timed_get(client, path)
        assert answer.status_code == 200, (path, answer.text)
        assert took < 5, (path, took)
    assert "Public API" in client.get("/p/acme/").text
    posted = client.post(INTAKE, content=FIRING)
    assert posted.status_code == 202, posted.text
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"] == "ok"
    assert ready.json()["checks"]["redis"].startswith("unreachable"), ready.json()
    # Once Redis has failed, the pages no longer wait for it (the breaker), a second at most.
    answers = [timed_get(client, "/p/acme/") for _ in range(20)]
    assert all(a.status_code == 200 for a, _ in answers)
    assert sorted(t for _, t in answers)[10] < 0.5, [t for _, t in answers]
    # The event loop is never blocked on Redis: while readiness waits for its PING,
    # liveness answers at once.
    slow = threading.Thread(target=lambda: httpx.get(url + "/readyz", timeout=10))
    slow.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert httpx.get(url + "/healthz", timeout=10).status_code == 200
    assert time.monotonic() - started < 0.5
    slow.join()


def test_redis_refusing_connections_leaves_pages_and_intake_up_and_the_outbox_drains_after(
    tmp_path: Path, pg_url: str, redis_server: RedisServer
) -> None:
    beacon_ = scaled(tmp_path, pg_url, redis_server.url)
    with (
        serve(beacon_.data, env=beacon_.env) as url,
        worker(beacon_.data, beacon_.env, tmp_path / "worker.log"),
        httpx.Client(base_url=url, timeout=15) as client,
    ):
        wait_for(lambda: client.get("/readyz").status_code == 200, 30, "readiness")
        assert "All Systems Operational" in client.get("/p/acme/").text
        redis_server.stop()  # connections refused from now on

        assert_carries_on_without_redis(client, url)
        # The event is stored; it waits in the outbox for Redis, and the page is unchanged.
        assert "All Systems Operational" in client.get("/p/acme/").text

        redis_server.start()  # an empty Redis, as after a restart without persistence
        wait_for(lambda: client.get("/readyz").status_code == 200, 10, "readiness again")
        wait_for(
            lambda: "Major System Outage" in client.get("/p/acme/").text,
            30,
            "the stored event's effect on the page once Redis is back",
        )


def test_redis_accepting_and_never_answering_leaves_pages_and_intake_up(
    tmp_path: Path, pg_url: str
) -> None:
    silent = SilentServer()
    try:
        beacon_ = scaled(tmp_path, pg_url, silent.url)
        with (
            serve(beacon_.data, env=beacon_.env) as url,
            httpx.Client(base_url=url, timeout=15) as client,
        ):
            assert_carries_on_without_redis(client, url)
            assert silent.accepted, "Beacon never reached the silent server"
            # A sign-in cannot skip its attempt counter: a 503 to retry, not a 500.
            form = client.get("/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf is not None
            answer = client.post(
                "/login", data={"email": "a@b.test", "password": "x", "csrf": csrf.group(1)}
            )
            # The form says so in the visitor's words; the log names Redis.
            assert answer.status_code == 503
            assert "Signing in is unavailable for a moment" in answer.text
            assert answer.headers["retry-after"]
    finally:
        silent.close()
