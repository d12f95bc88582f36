"""An in-process Beacon app on a SQLite file of the test's own, driven through TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.db import Store
from engine.runtime import Runtime
from engine.settings import Settings
from pages.app import create_app


@dataclass
class App:
    runtime: Runtime
    client: TestClient

    @property
    def store(self) -> Store:
        return self.runtime.store

    def key(self, team: str | None = None, *, admin: bool = False) -> dict[str, str]:
        """Authorization headers for a new API key of `team` (or an admin key)."""
        key = create_api_key(self.store, name=f"k-{team or 'admin'}", team=team, admin=admin)
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def make_app(tmp_path: Path, make_runtime: Callable[..., Runtime]) -> Iterator[Callable[..., App]]:
    made: list[App] = []

    def make(**env: str) -> App:
        settings = Settings.from_env({"BEACON_DATA_DIR": str(tmp_path / "data"), **env})
        runtime = make_runtime(settings)
        client = TestClient(create_app(runtime), base_url="http://testserver")
        made.append(App(runtime, client))
        return made[-1]

    yield make
    # The clients close here, before `make_runtime` closes their runtimes.
    for app in made:
        app.client.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


@pytest.fixture(params=["sqlite", "postgres"])
def any_app(request: pytest.FixtureRequest, make_app: Callable[..., App]) -> App:
    """The same test on a SQLite file and on a PostgreSQL database."""
    if request.param == "postgres":
        return make_app(BEACON_DATABASE_URL=request.getfixturevalue("pg_url"))
    return make_app()
