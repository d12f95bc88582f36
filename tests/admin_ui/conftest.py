"""Fixtures for the admin web UI: the app on an embedded runtime of the test's own, two
teams (one private) with services and pages, users of each role, and signing in through
the real form."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from engine import services, teams
from engine.accounts import create_api_key, create_user
from engine.db import Store
from engine.runtime import Runtime
from engine.settings import Settings
from pages.app import create_app
from tests.browsers import chromium
from tests.conftest import ROOT
from tests.support import data_store, serve

PASSWORD = "correct horse battery staple"
BASE_URL = "http://testserver"


@dataclass(frozen=True)
class Served:
    """A running `beacon serve`: its base URL, its store, the seeded world, an admin key."""

    base: str
    store: Store
    world: World
    auth: dict[str, str]
    data: Path | None = None


@dataclass(frozen=True)
class World:
    """Team `platform` (not private) and team `acme` (private), each with two services."""

    team_ids: dict[str, int]
    service_ids: dict[str, int]


def seed(store: Store) -> World:
    """Two teams, their services, and one user per role (responders of each team, a
    stakeholder of acme, an admin); every password is PASSWORD."""
    with store.begin() as conn:
        team_ids = {
            "platform": teams.create(conn, teams.TeamFields("platform", "Platform"), actor="t"),
            "acme": teams.create(conn, teams.TeamFields("acme", "ACME", private=True), actor="t"),
        }
        service_ids = {}
        for team, key, name in (
            ("platform", "api", "Public API"),
            ("platform", "db", "Database"),
            ("acme", "portal", "ACME Portal"),
            ("acme", "billing", "ACME Billing"),
        ):
            fields = services.ServiceFields(key, name, group="Core")
            service_ids[key] = services.create(conn, team_ids[team], fields, actor="t")
    create_user(store, "admin@example.test", role="admin", password=PASSWORD)
    create_user(store, "ops@example.test", role="responder", teams=["platform"], password=PASSWORD)
    create_user(store, "acme-ops@example.test", role="responder", teams=["acme"], password=PASSWORD)
    create_user(store, "viewer@example.test", role="stakeholder", teams=["acme"], password=PASSWORD)
    return World(team_ids, service_ids)


@pytest.fixture(params=["sqlite", "postgres"])
def rt(
    request: pytest.FixtureRequest, tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> Runtime:
    """The in-process app's runtime, on SQLite and on PostgreSQL."""
    env = {"BEACON_DATA_DIR": str(tmp_path / "data"), "BEACON_BASE_URL": BASE_URL}
    if request.param == "postgres":
        env["BEACON_DATABASE_URL"] = request.getfixturevalue("pg_url")
    return make_runtime(Settings.from_env(env))


@pytest.fixture
def world(rt: Runtime) -> World:
    return seed(rt.store)


@pytest.fixture
def client(rt: Runtime, world: World) -> Iterator[TestClient]:
    with TestClient(create_app(rt), base_url=BASE_URL) as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def sign_in(client: TestClient, email: str) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf": token, "next": "/admin/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text


@contextlib.contextmanager
def seeded_serve(data: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`beacon serve` on a seeded data directory (`seed`) with two pages: platform's public
    page `shop`, never activated, and acme's private page `acme`, active. Outbound
    webhooks may go to loopback (the subscribers' stand-in)."""
    with data_store(data, upgrade=True) as store:
        world = seed(store)
        key = create_api_key(store, name="seed", admin=True)
        with serve(data, env={"BEACON_WEBHOOK_ALLOW_PRIVATE": "true", **(env or {})}) as base:
            auth = {"Authorization": f"Bearer {key}"}
            for body in (
                {"slug": "shop", "name": "Shop Status", "teams": ["platform"], "services": ["api"]},
                {
                    "slug": "acme",
                    "name": "ACME Status",
                    "type": "private",
                    "teams": ["acme"],
                    "services": ["portal"],
                    "active": True,
                },
            ):
                answer = httpx.post(f"{base}/api/v1/pages", json=body, headers=auth)
                assert answer.status_code == 201, answer.text
            yield Served(base, store, world, auth, data)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`seeded_serve` for a test module."""
    with seeded_serve(tmp_path_factory.mktemp("admin-ui") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`beacon serve --config examples/beacon.yaml` (Northwind: team platform, its services,
    sources, rules and templates), with an admin and a responder of platform who sign in
    with PASSWORD. Its `world` is empty: the config file made everything."""
    data = tmp_path_factory.mktemp("admin-ui-example") / "data"
    config = str(ROOT / "examples" / "beacon.yaml")
    with data_store(data, upgrade=True) as store:
        key = create_api_key(store, name="seed", admin=True)
        with serve(data, "--config", config, env={"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"}) as base:
            create_user(store, "admin@example.test", role="admin", password=PASSWORD)
            create_user(
                store, "ops@example.test", role="responder", teams=["platform"], password=PASSWORD
            )
            yield Served(base, store, World({}, {}), {"Authorization": f"Bearer {key}"})
