"""Fixtures for the account tests: the app on an embedded runtime of the test's own, users
with passwords, and signing in through the real form."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from engine.accounts import create_user
from engine.runtime import Runtime
from engine.settings import Settings
from pages.app import create_app

PASSWORD = "correct horse battery staple"
BASE_URL = "http://testserver"


@pytest.fixture
def rt(tmp_path: Path, make_runtime: Callable[..., Runtime]) -> Runtime:
    env = {"BEACON_DATA_DIR": str(tmp_path / "data"), "BEACON_BASE_URL": BASE_URL}
    return make_runtime(Settings.from_env(env))


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), base_url=BASE_URL) as test_client:
        yield test_client


def make_user(
    rt: Runtime, email: str, *, role: str = "stakeholder", teams: tuple[str, ...] = ()
) -> int:
    return create_user(rt.store, email, role=role, teams=list(teams), password=PASSWORD)


def form_csrf(client: TestClient, path: str = "/login") -> str:
    page = client.get(path).text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def sign_in(client: TestClient, email: str, password: str = PASSWORD, **headers: str) -> Any:
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf": form_csrf(client), "next": "/"},
        headers=headers,
        follow_redirects=False,
    )


def signed_in(client: TestClient) -> bool:
    return "Signed in" in client.get("/login").text
