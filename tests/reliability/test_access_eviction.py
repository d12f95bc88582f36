"""Access takes effect at once: deactivating or deleting a page through the admin
API evicts it from every cache in the same request (this process's, the shared Redis cache
other processes read, the fast path's), with no re-render needed, and ends its open
live-update streams."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.settings import Settings
from pages.app import create_app
from pages.fastpath import outermost
from tests.conftest import REDIS_URL


@dataclass
class Beacon:
    """Two web processes' apps on one store (and, scaled, one Redis), without workers: no
    render job ever runs, so only eviction can change what the caches hold."""

    first: TestClient
    second: TestClient
    admin: dict[str, str]


def _settings(tmp_path: Path, extra: dict[str, str]) -> Settings:
    return Settings.from_env({"BEACON_DATA_DIR": str(tmp_path / "data"), **extra})


@pytest.fixture(params=["embedded", "scaled"])
def beacon(
    request: pytest.FixtureRequest, tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> Iterator[Beacon]:
    if request.param == "embedded":
        runtime = make_runtime(_settings(tmp_path, {}))
        runtimes = [runtime, runtime]
    else:
        pg_url = request.getfixturevalue("pg_url")
        prefix = request.getfixturevalue("redis_prefix")
        extra = {
            "BEACON_DATABASE_URL": pg_url,
            "BEACON_REDIS_URL": REDIS_URL,
            "BEACON_REDIS_PREFIX": prefix,
            "BEACON_SECRET_KEY": secrets.token_hex(32),
        }
        runtimes = [make_runtime(_settings(tmp_path, extra))]
        runtimes.append(make_runtime(_settings(tmp_path, extra), upgrade=False))
    admin = {"Authorization": f"Bearer {create_api_key(runtimes[0].store, name='a', admin=True)}"}
    apps = [outermost(create_app(rt), rt) for rt in runtimes]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        yield Beacon(first, second, admin)


def _page(beacon: Beacon, slug: str) -> int:
    client, admin = beacon.first, beacon.admin
    if client.get("/api/v1/teams", headers=admin).json() == []:
        assert client.post("/api/v1/teams", json={"key": "t"}, headers=admin).status_code == 201
        made = client.post(
            "/api/v1/services", json={"key": "api", "name": "API", "team": "t"}, headers=admin
        )
        assert made.status_code == 201, made.text
    page = client.post(
        "/api/v1/pages",
        json={"slug": slug, "name": slug, "services": ["api"], "active": True, "teams": ["t"]},
        headers=admin,
    )
    assert page.status_code == 201, page.text
    # Both processes have it cached (a cold render each, or the shared cache).
    for c in (beacon.first, beacon.second):
        for _ in range(2):
            assert c.get(f"/p/{slug}/").status_code == 200
            assert c.get(f"/p/{slug}/api/v2/summary.json").status_code == 200
    return int(page.json()["id"])


def _gone(beacon: Beacon, slug: str) -> None:
    for client in (beacon.first, beacon.second):
        for path in (f"/p/{slug}/", f"/p/{slug}/api/v2/summary.json", f"/p/{slug}/live"):
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.status_code)


def test_a_deactivated_page_is_gone_from_every_cache_in_the_same_request(beacon: Beacon):
    page = _page(beacon, "acme")
    patched = beacon.first.patch(
        f"/api/v1/pages/{page}", json={"active": False}, headers=beacon.admin
    )
    assert patched.status_code == 200, patched.text
    _gone(beacon, "acme")


def test_a_deleted_page_is_gone_from_every_cache_in_the_same_request(beacon: Beacon):
    page = _page(beacon, "acme")
    assert beacon.first.delete(f"/api/v1/pages/{page}", headers=beacon.admin).status_code == 204
    _gone(beacon, "acme")


def test_an_open_live_stream_ends_when_its_page_is_deactivated(beacon: Beacon):
    page = _page(beacon, "acme")
    lines: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with beacon.first.stream("GET", "/p/acme/live") as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                lines.append(line)
                opened.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(30), "the stream did not open"
    patched = beacon.first.patch(
        f"/api/v1/pages/{page}", json={"active": False}, headers=beacon.admin
    )
    assert patched.status_code == 200
    listener.join(30)
    assert not listener.is_alive(), "the stream is still open"
    assert lines[0].startswith("retry:")
