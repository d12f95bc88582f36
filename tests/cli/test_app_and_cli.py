"""The app's health endpoints and the account commands, on a real store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis
import sqlalchemy as sa
from starlette.testclient import TestClient

from engine.queue import Queues
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import api_keys, team_members, teams, users
from pages.app import create_app
from pages.auth import principal_for_api_key
from tests.conftest import free_port
from tests.support import beacon, beacon_env


def test_healthz_readyz_and_metrics_answer(runtime: Runtime) -> None:
    with TestClient(create_app(runtime)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"store": "ok", "queue": "ok"}
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "beacon_outbox_pending 0.0" in metrics.text


def test_readyz_says_which_part_is_unreachable(runtime: Runtime) -> None:
    # A real Redis client aimed at a port where nothing listens.
    runtime.queues = Queues(redis.Redis(port=free_port(), socket_connect_timeout=0.5))
    with TestClient(create_app(runtime)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"store": "ok", "redis": "unreachable: ConnectionError"}


def test_an_unknown_route_is_a_json_404(runtime: Runtime) -> None:
    with TestClient(create_app(runtime)) as client:
        answer = client.get("/api/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.json()["error"]["status"] == 404


def test_apikey_create_prints_a_key_once_and_stores_only_its_hash(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    env = beacon_env(settings.data_dir)
    assert beacon(["db", "upgrade"], env).returncode == 0
    rt = make_runtime(settings, upgrade=False)
    with rt.store.begin() as conn:
        conn.execute(teams.insert().values(key="platform", name="Platform"))
    made = beacon(["apikey", "create", "--team", "platform", "--name", "ci"], env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("bk_")
    with rt.store.read() as conn:
        stored = conn.execute(sa.select(api_keys)).one()
    assert key not in str(tuple(stored))
    who = principal_for_api_key(rt.store, key)
    assert who is not None and not who.admin and who.team_ids == {stored.team_id}
    assert principal_for_api_key(rt.store, key + "x") is None


def test_user_create_puts_the_user_in_its_teams(
    settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    env = beacon_env(settings.data_dir)
    beacon(["db", "upgrade"], env)
    rt = make_runtime(settings, upgrade=False)
    with rt.store.begin() as conn:
        conn.execute(teams.insert().values(key="acme", name="ACME", private=True))
    made = beacon(
        ["user", "create", "Ops@Acme.test", "--role", "stakeholder", "--team", "acme"],
        {**env, "BEACON_USER_PASSWORD": "a password for ops"},
    )
    assert made.returncode == 0, made.stderr
    with rt.store.read() as conn:
        user = conn.execute(sa.select(users)).one()
        member = conn.execute(sa.select(team_members)).one()
    assert user.email == "ops@acme.test" and user.role == "stakeholder"
    assert member.user_id == user.id
    unknown = beacon(
        ["user", "create", "x@y.test", "--role", "admin", "--team", "nope"],
        {**env, "BEACON_USER_PASSWORD": "a password for x"},
    )
    assert unknown.returncode == 2
    assert "no team with key 'nope'" in unknown.stderr


def test_beacon_worker_refuses_embedded_mode_with_a_reason(tmp_path: Path) -> None:
    result = beacon(["worker", "--burst"], beacon_env(tmp_path / "data"))
    assert result.returncode == 2
    assert "BEACON_REDIS_URL" in result.stderr


def test_a_worker_with_queues_serves_only_those(tmp_path: Path, redis_prefix: str) -> None:
    """`beacon worker --queues notify`: a worker of its own for notifications (scaled mode),
    which leaves the other queues' jobs to the other workers."""
    from rq import Queue

    from tests.conftest import REDIS_URL

    env = beacon_env(
        tmp_path / "data",
        {
            "BEACON_REDIS_URL": REDIS_URL,
            "BEACON_REDIS_PREFIX": redis_prefix,
            "BEACON_SECRET_KEY": "k" * 48,
        },
    )
    assert beacon(["db", "upgrade"], env).returncode == 0
    connection = redis.Redis.from_url(REDIS_URL)
    notify = Queue(f"{redis_prefix}beacon-notify", connection=connection)
    default = Queue(f"{redis_prefix}beacon-default", connection=connection)
    notify.enqueue("os.getcwd")
    default.enqueue("os.getcwd")
    result = beacon(["worker", "--burst", "--queues", "notify"], env)
    assert result.returncode == 0, result.stderr
    assert (notify.count, default.count) == (0, 1)
    connection.close()


def test_a_worker_refuses_an_unknown_queue_by_name(tmp_path: Path) -> None:
    env = beacon_env(
        tmp_path / "data",
        {"BEACON_REDIS_URL": "redis://127.0.0.1:1/0", "BEACON_SECRET_KEY": "k" * 48},
    )
    result = beacon(["worker", "--burst", "--queues", "notify,notfy"], env)
    assert result.returncode == 2
    assert "unknown queue 'notfy'" in result.stderr
    assert "default, evaluate, notify, render" in result.stderr


def test_beacon_serve_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT
    from tests.support import wait_http

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)],
        env=beacon_env(tmp_path / "data"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        time.sleep(1.5)  # the worker threads are now blocked waiting for jobs
        proc.send_signal(signal.SIGTERM)
        # Generous bound for a loaded machine; before the fix it took 20 s or more.
        # uvicorn re-raises the signal after a graceful shutdown, as a well-behaved server does.
        assert proc.wait(timeout=8) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_without_a_base_url_links_to_the_address_it_listens_on() -> None:
    from cli.main import served_settings

    plain = Settings()
    assert served_settings(plain, {}, "127.0.0.1", 9001).base_url == "http://127.0.0.1:9001"
    assert served_settings(plain, {}, "0.0.0.0", 80).base_url == "http://127.0.0.1:80"
    assert served_settings(plain, {}, "::", 9001).base_url == "http://[::1]:9001"
    assert served_settings(plain, {}, "fe80::1", 9001).base_url == "http://[fe80::1]:9001"
    assert served_settings(plain, {}, "status.local", 9001).base_url == "http://status.local:9001"
    given = Settings(base_url="https://status.example.com")
    env = {"BEACON_BASE_URL": "https://status.example.com"}
    assert served_settings(given, env, "0.0.0.0", 9001) is given
