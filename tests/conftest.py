"""Shared fixtures: real stores (SQLite files, PostgreSQL databases), real Redis, settings.

Tests create their own PostgreSQL databases and Redis key prefixes and remove them after;
they never drop or flush what they did not create. Where PostgreSQL or Redis is missing a
test skips with the reason, except under CI=true, where it fails instead.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cli.wiring import build_runtime, handlers
from engine import migrate
from engine.db import Store, create_store
from engine.queue import Queues
from engine.runtime import Runtime, uninstall
from engine.settings import Settings

if TYPE_CHECKING:
    # Only for annotations: tests.support imports this module.
    from tests.support import RecordingServer

ROOT = Path(__file__).resolve().parent.parent


def _shared_dir() -> Path:
    """`shared/` beside the checkout (as CI lays it out), or beside one of its parents (a
    git worktree kept in a subfolder); BEACON_SHARED_DIR overrides both."""
    if os.environ.get("BEACON_SHARED_DIR"):
        return Path(os.environ["BEACON_SHARED_DIR"])
    for parent in ROOT.parents:
        if (parent / "shared" / "fixtures").is_dir():
            return parent / "shared"
    return ROOT.parent / "shared"


SHARED = _shared_dir()
FIXTURES = SHARED / "fixtures"
PG_ADMIN_URL = os.environ.get("BEACON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BEACON_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false, except in CI where every test must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-mode settings with a data directory of the test's own."""
    return Settings.from_env({"BEACON_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def sqlite_store(settings: Settings) -> Iterator[Store]:
    store = create_store(settings)
    migrate.upgrade(store)
    yield store
    store.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, dropped afterwards."""
    need(port_open("127.0.0.1", 5432), "PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    name = f"beacon_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_store(pg_url: str, tmp_path: Path) -> Iterator[Store]:
    settings = Settings.from_env(
        {"BEACON_DATA_DIR": str(tmp_path / "data"), "BEACON_DATABASE_URL": pg_url}
    )
    store = create_store(settings)
    migrate.upgrade(store)
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Store:
    """The same test on a SQLite file and on a PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_store")  # type: ignore[no-any-return,unused-ignore]
    return request.getfixturevalue("sqlite_store")  # type: ignore[no-any-return,unused-ignore]


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    """A recording HTTP server on loopback, the stand-in for the providers Beacon calls."""
    from tests.support import RecordingServer

    srv = RecordingServer()
    yield srv
    srv.close()


@pytest.fixture
def make_runtime() -> Iterator[Callable[..., Runtime]]:
    """Builds runtimes on stores of the test's own, migrated unless `upgrade=False` (a test
    that migrates through `beacon db upgrade` itself); with `store`, around that store,
    which its own fixture migrated and disposes. Afterwards, whatever the test did, no
    runtime stays installed (`create_app` installs the one it is given) and every store
    built here is closed: a later test must never find this test's runtime installed, or
    its store open."""
    made: list[Runtime] = []

    def make(settings: Settings, *, upgrade: bool = True, store: Store | None = None) -> Runtime:
        if store is not None:
            return Runtime(settings, store, Queues.from_settings(settings), handlers())
        runtime = build_runtime(settings)
        made.append(runtime)
        if upgrade:
            migrate.upgrade(runtime.store)
        return runtime

    yield make
    uninstall()
    for runtime in made:
        runtime.close()


@pytest.fixture
def runtime(settings: Settings, make_runtime: Callable[..., Runtime]) -> Runtime:
    """An embedded-mode runtime on a migrated SQLite file of the test's own."""
    return make_runtime(settings)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of the test's own on the real Redis; its keys are deleted afterwards."""
    need(port_open("127.0.0.1", 6379), "Redis is not running on 127.0.0.1:6379")
    import redis

    prefix = f"beacon-test-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    # RQ's own keys carry the prefix inside them (rq:queue:<prefix>..., rq:job:<prefix>-...).
    for key in client.scan_iter(match=f"*{prefix.rstrip(':')}*", count=1000):
        client.delete(key)
    client.close()
