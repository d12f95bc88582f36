"""Fixtures for the subscription tests: a runtime whose SendGrid, Twilio and webhook targets
are one real HTTP server on loopback, the app on it, and pages to subscribe to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import incidents
from engine.accounts import create_user
from engine.db import Store
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import (
    deadlines,
    deliveries,
    metadata,
    page_services,
    page_teams,
    status_pages,
    subscribers,
    team_members,
)
from pages.app import create_app
from tests.factories import service, team
from tests.support import RecordingServer

BASE_URL = "http://status.test"
PASSWORD = "correct horse battery staple"


def settings_for(tmp_path: Path, server: RecordingServer, **extra: str) -> Settings:
    env = {
        "BEACON_DATA_DIR": str(tmp_path / "data"),
        "BEACON_BASE_URL": BASE_URL,
        "BEACON_SENDGRID_API_KEY": "SG.test",
        "BEACON_SENDGRID_API_URL": server.url,
        "BEACON_EMAIL_FROM": "status@acme.test",
        "BEACON_TWILIO_ACCOUNT_SID": "AC123",
        "BEACON_TWILIO_AUTH_TOKEN": "token",
        "BEACON_TWILIO_FROM": "+15550001111",
        "BEACON_TWILIO_API_URL": server.url,
        "BEACON_WEBHOOK_ALLOW_PRIVATE": "true",
        **extra,
    }
    return Settings.from_env(env)


@pytest.fixture
def rt(tmp_path: Path, server: RecordingServer, make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime(settings_for(tmp_path, server))


@pytest.fixture
def rt_each_step(
    tmp_path: Path, server: RecordingServer, make_runtime: Callable[..., Runtime]
) -> Runtime:
    """A runtime that sends each step at once (`BEACON_NOTIFY_WINDOW=0`): for tests of who
    hears what, not of coalescing (tests/subscriptions/test_coalescing.py)."""
    return make_runtime(settings_for(tmp_path, server, BEACON_NOTIFY_WINDOW="0"))


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    # A browser on Beacon's own pages: its requests say so (Origin), as real ones do, so a
    # signed-in member's JSON calls may use the session (pages.sessions.CrossSiteGuard;
    # tests/accounts shows the refusals).
    with TestClient(
        create_app(rt), base_url="http://testserver", headers={"Origin": "http://testserver"}
    ) as test_client:
        yield test_client


@dataclass(frozen=True)
class Site:
    team_id: int
    service_ids: dict[str, int]
    page_id: int
    slug: str


@pytest.fixture(params=["sqlite", "postgres"])
def db_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The store's URL for the test: a SQLite file (the default) or a PostgreSQL database."""
    if request.param == "postgres":
        return {"BEACON_DATABASE_URL": request.getfixturevalue("pg_url")}
    return {}


@pytest.fixture
def rt_db(
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
    db_env: dict[str, str],
) -> Runtime:
    """`rt` on each store (db_env), each step sent at once (no coalescing window)."""
    return make_runtime(settings_for(tmp_path, server, BEACON_NOTIFY_WINDOW="0", **db_env))


@pytest.fixture
def client_db(rt_db: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt_db), base_url="http://testserver") as test_client:
        yield test_client


def table_dump(store: Store) -> str:
    """Every row of every table, as text: what a stolen database (or backup) gives."""
    with store.read() as conn:
        return "\n".join(
            str(tuple(row))
            for table in metadata.sorted_tables
            for row in conn.execute(sa.select(table))
        )


def make_site(
    rt: Runtime,
    *,
    slug: str = "acme",
    team_key: str = "platform",
    private: bool = False,
    active: bool = True,
    keys: tuple[str, ...] = ("api", "db"),
    notify_component_changes: bool = False,
) -> Site:
    with rt.store.begin() as conn:
        team_id = team(conn, team_key, name=team_key.title(), private=private)
        ids = {key: service(conn, team_id, key, name=f"{key.upper()} service") for key in keys}
        inserted = conn.execute(
            status_pages.insert().values(
                team_id=team_id,
                slug=slug,
                name=f"{slug.title()} Status",
                type="private" if private else "public",
                active=active,
                notify_component_changes=notify_component_changes,
            )
        ).inserted_primary_key
        assert inserted is not None
        page_id = int(inserted[0])
        conn.execute(page_teams.insert().values(page_id=page_id, team_id=team_id))
        conn.execute(
            page_services.insert(),
            [
                {"page_id": page_id, "service_id": sid, "position": n}
                for n, sid in enumerate(ids.values())
            ],
        )
    return Site(team_id, ids, page_id, slug)


def open_incident(rt: Runtime, site: Site, key: str = "api", **kwargs: Any) -> int:
    """An incident opened by a person on the site's `key` service, as engine.incidents
    makes it: "API errors" (or `title`) at `impact` (major_outage) with `message` ("We are
    investigating."); other keywords go to incidents.create. Returns its id."""
    with rt.store.begin() as conn:
        return incidents.create(
            conn,
            team_id=site.team_id,
            title=kwargs.pop("title", "API errors"),
            message=kwargs.pop("message", "We are investigating."),
            impacts={site.service_ids[key]: kwargs.pop("impact", "major_outage")},
            **kwargs,
        )


def make_user(
    rt: Runtime, email: str, *, teams: tuple[str, ...] = (), role: str = "stakeholder"
) -> int:
    return create_user(rt.store, email, role=role, teams=list(teams), password=PASSWORD)


def leave_team(rt: Runtime, user_id: int) -> None:
    with rt.store.begin() as conn:
        conn.execute(team_members.delete().where(team_members.c.user_id == user_id))


def subscriber_rows(rt: Runtime) -> list[Any]:
    with rt.store.read() as conn:
        return list(conn.execute(sa.select(subscribers).order_by(subscribers.c.id)))


def sign_in(client: TestClient, email: str, password: str = PASSWORD, next_path: str = "/") -> Any:
    client.get("/login")
    token = client.cookies.get("beacon_session")
    assert token
    form = client.get("/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf": csrf, "next": next_path},
        follow_redirects=False,
    )


def drain(rt: Runtime, rounds: int = 10) -> None:
    """Run the real pipeline until the outbox is quiet: dispatcher passes and burst workers."""
    from engine.runtime import install
    from workers.dispatch import dispatch_once

    install(rt)
    for _ in range(rounds):
        if not dispatch_once(rt):
            return
        rt.queues.worker().work(burst=True, logging_level="WARNING")


def advance(rt: Runtime, by: timedelta) -> None:
    """Let `by` pass for everything the store keeps a time of."""
    times = ("next_attempt_at", "sent_at", "created_at", "updated_at")
    with rt.store.begin() as conn:
        for table, columns in ((deliveries, times), (deadlines, ("due_at",))):
            key = table.c.id if "id" in table.c else None
            keys = [table.c[n] for n in ("kind", "key")] if key is None else [key]
            for row in conn.execute(sa.select(*keys, *(table.c[c] for c in columns))).all():
                values = {c: row._mapping[c] - by for c in columns if row._mapping[c] is not None}
                where = [k == row._mapping[k.name] for k in keys]
                conn.execute(table.update().where(*where).values(**values))


def body_of(request: dict[str, object]) -> bytes:
    body = request["body"]
    assert isinstance(body, bytes)
    return body


def header_of(request: dict[str, object], name: str) -> str:
    headers = request["headers"]
    assert isinstance(headers, dict)
    return str(headers.get(name, ""))


def sent_json(server: RecordingServer) -> list[dict[str, Any]]:
    """The JSON bodies the server received (SendGrid mails, webhook payloads)."""
    import json

    return [
        json.loads(body_of(r))
        for r in server.requests
        if header_of(r, "Content-Type").startswith("application/json")
    ]


def sms_sent(server: RecordingServer) -> list[dict[str, str]]:
    """The Twilio messages the server received, as form fields."""
    from urllib.parse import parse_qsl

    return [
        dict(parse_qsl(body_of(r).decode()))
        for r in server.requests
        if "/Messages.json" in str(r["path"])
    ]


@dataclass(frozen=True)
class Email:
    """One recipient's email from the SendGrid stand-in's requests, with SendGrid's
    per-personalization substitutions and headers applied as SendGrid applies them."""

    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]


def emails(server: RecordingServer) -> list[Email]:
    out = []
    for mail in sent_json(server):
        if "personalizations" not in mail:
            continue
        content = {c["type"]: c["value"] for c in mail["content"]}
        for p in mail["personalizations"]:
            subject, text, html = (
                p.get("subject", mail["subject"]),
                content["text/plain"],
                content.get("text/html", ""),
            )
            for key, value in (p.get("substitutions") or {}).items():
                subject, text, html = (x.replace(key, value) for x in (subject, text, html))
            headers = {**mail.get("headers", {}), **p.get("headers", {})}
            out.extend(Email(to["email"], subject, text, html, headers) for to in p["to"])
    return out
