"""Fixtures for the intake's tests: an app on a real store with teams and alert sources."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from adapters.alert_sources import ADAPTERS
from engine.accounts import create_api_key
from engine.db import Store, create_store
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import alert_events
from pages.app import create_app
from pages.fastpath import outermost
from tests import factories

FAKE_TYPE = "fake-tool"


@pytest.fixture(autouse=True)
def fake_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ADAPTERS, FAKE_TYPE, "tests.intake.fake_tool")


def add_team(store: Store, key: str) -> int:
    with store.begin() as conn:
        return factories.team(conn, key)


def add_source(
    store: Store,
    team_id: int,
    key: str = "tool",
    *,
    type: str = FAKE_TYPE,
    integration_key: str | None = None,
    **values: Any,
) -> tuple[int, str]:
    """A source row; returns its id and integration key."""
    ikey = integration_key or secrets.token_urlsafe(16)
    with store.begin() as conn:
        source_id = factories.source(conn, team_id, key, type, integration_key=ikey, **values)
    return source_id, ikey


@dataclass
class Env:
    runtime: Runtime
    client: TestClient
    team_id: int
    source_id: int
    key: str

    @property
    def store(self) -> Store:
        return self.runtime.store

    def post(self, body: Any = None, key: str | None = None, **kwargs: Any) -> Any:
        url = f"/api/v1/events/{key or self.key}"
        if body is not None:
            kwargs["json"] = body
        return self.client.post(url, **kwargs)


@pytest.fixture(params=["fast path", "routed"])
def env(
    settings: Settings, make_runtime: Callable[..., Runtime], request: pytest.FixtureRequest
) -> Iterator[Env]:
    """An embedded-mode app (SQLite file, fakeredis) with one team and one fake-tool source,
    as `beacon serve` runs it: deliveries to Beacon's own host answered before the
    middleware ("fast path"), and to another host name through the app's route ("routed").
    Both must give the same answers."""
    yield from _env(make_runtime(settings), fast=request.param == "fast path")


@pytest.fixture
def pg_env(pg_url: str, tmp_path: Path, make_runtime: Callable[..., Runtime]) -> Iterator[Env]:
    """The same on PostgreSQL."""
    settings = Settings.from_env(
        {"BEACON_DATA_DIR": str(tmp_path / "pgdata"), "BEACON_DATABASE_URL": pg_url}
    )
    yield from _env(make_runtime(settings))


def _env(rt: Runtime, fast: bool = True) -> Iterator[Env]:
    """The app on `rt` (made by `make_runtime`, which uninstalls and closes it) with one
    team and one fake-tool source, for as long as the caller holds the generator."""
    team_id = add_team(rt.store, "platform")
    source_id, key = add_source(rt.store, team_id)
    app = outermost(create_app(rt), rt)
    # localhost is one of Beacon's own names; a LAN address a tool posts to may not be.
    base_url = "http://localhost" if fast else "http://10.1.2.3"
    with TestClient(app, base_url=base_url) as client:
        yield Env(rt, client, team_id, source_id, key)


def events_in(data_dir: Path) -> list[sa.Row]:
    """The events stored in the SQLite file under `data_dir`, oldest first, read through a
    store of their own (a `beacon` subprocess wrote them)."""
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    with store.read() as conn:
        rows = list(conn.execute(sa.select(alert_events).order_by(alert_events.c.id)))
    store.dispose()
    return rows


def api_key(store: Store, team: str | None = None, admin: bool = False) -> dict[str, str]:
    key = create_api_key(store, name=f"k-{secrets.token_hex(3)}", team=team, admin=admin)
    return {"Authorization": f"Bearer {key}"}


def firing(id: str = "a1", **extra: Any) -> dict[str, Any]:
    return {"alerts": [{"id": id, "state": "down", "at": "2026-11-29T10:00:00Z", **extra}]}


def resolved(id: str = "a1", **extra: Any) -> dict[str, Any]:
    return {"alerts": [{"id": id, "state": "up", "at": "2026-11-29T10:05:00Z", **extra}]}
