"""An embedded runtime with a migrated store, and an app on it, for page tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from engine.runtime import Runtime
from pages.app import create_app


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    """The suite's `runtime`, under the short name these tests use."""
    return runtime


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client
