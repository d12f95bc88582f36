"""An admin API app on the parametrised `store` (SQLite and PostgreSQL), with keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.db import Store
from engine.runtime import Runtime
from engine.settings import Settings
from pages.app import create_app


@dataclass
class Api:
    client: TestClient
    store: Store
    admin: dict[str, str]

    def key_for(self, team: str) -> dict[str, str]:
        return bearer(create_api_key(self.store, name=f"{team}-key", team=team))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(store: Store, settings: Settings, make_runtime: Callable[..., Runtime]) -> Iterator[Api]:
    app = create_app(make_runtime(settings, store=store))
    admin = bearer(create_api_key(store, name="admin", admin=True))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, store, admin)
