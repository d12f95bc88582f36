"""An embedded runtime with a migrated store, and an app on it, for page tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from engine import migrate
from engine.settings import Settings
from pages.app import create_app
from workers.runtime import Runtime, uninstall


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.build(settings)
    migrate.upgrade(runtime.store)
    yield runtime
    uninstall()
    runtime.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client
