"""Personal feed links (issue 14, item 8): a member reads a private page's RSS, Atom and
calendar through a revocable token URL that acts for them, only on that page, and only
while they may read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.tables import feed_tokens, users
from pages.app import create_app
from pages.errors import redact_path

from .conftest import BASE_URL, form_csrf, make_user, sign_in

SOON = datetime.now(UTC) + timedelta(days=2)
JSON_FROM_HERE = {"Origin": BASE_URL, "Content-Type": "application/json"}


def _ok(answer: Any) -> Any:
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def _customer(client: TestClient, admin: dict[str, str], rt: Runtime, team: str) -> None:
    """A private team with a private page, an incident and a maintenance window, and a
    stakeholder `<team>@example.test`."""
    _ok(client.post("/api/v1/teams", json={"key": team, "private": True}, headers=admin))
    key = {"Authorization": f"Bearer {create_api_key(rt.store, name=team, team=team)}"}
    svc = _ok(client.post("/api/v1/services", json={"key": "api", "name": "API"}, headers=key))
    body = {"slug": f"page-{team}", "name": f"{team} status", "type": "private"}
    _ok(
        client.post(
            "/api/v1/pages", json={**body, "services": [svc["id"]], "active": True}, headers=key
        )
    )
    incident = {"title": f"{team}-outage-title", "message": "x", "impacts": {"api": "major_outage"}}
    _ok(client.post("/api/v1/incidents", json=incident, headers=key))
    window = {
        "title": f"{team}-maintenance-title",
        "starts_at": SOON.isoformat(),
        "ends_at": (SOON + timedelta(hours=1)).isoformat(),
        "services": [svc["id"]],
    }
    _ok(client.post("/api/v1/maintenance-windows", json=window, headers=key))
    make_user(rt, f"{team}@example.test", role="stakeholder", teams=(team,))


@pytest.fixture
def world(rt: Runtime) -> Any:
    app = create_app(rt)
    admin = {"Authorization": f"Bearer {create_api_key(rt.store, name='root', admin=True)}"}
    with TestClient(app, base_url=BASE_URL) as setup:
        for team in ("acme", "globex"):
            _customer(setup, admin, rt, team)
    return app, admin


def _member(app: Any, team: str) -> TestClient:
    client = TestClient(app, base_url=BASE_URL)
    assert sign_in(client, f"{team}@example.test").status_code == 303
    return client


def _make_link(client: TestClient, slug: str) -> Any:
    return client.post("/api/v1/feed-links", json={"page": slug}, headers=JSON_FROM_HERE)


def test_a_member_reads_a_private_pages_feeds_and_calendar_through_a_personal_link(
    rt: Runtime, world: Any
) -> None:
    app, _admin = world
    member = _member(app, "acme")
    made = _make_link(member, "page-acme")
    assert made.status_code == 201, made.text
    urls = made.json()["urls"]
    token = urls["rss"].split("/feeds/", 1)[1].split("/", 1)[0]
    assert urls["rss"] == f"{BASE_URL}/p/page-acme/feeds/{token}/history.rss"

    reader = TestClient(app, base_url=BASE_URL)  # a feed reader: no cookie, no key
    assert reader.get("/p/page-acme/history.rss").status_code == 401
    for name, url in urls.items():
        answer = reader.get(url.removeprefix(BASE_URL))
        assert answer.status_code == 200, (name, answer.text)
        assert answer.headers["cache-control"] == "private, no-store"
        assert "globex" not in answer.text
    assert "acme-outage-title" in reader.get(urls["rss"]).text
    assert "acme-outage-title" in reader.get(urls["atom"]).text
    assert "acme-maintenance-title" in reader.get(urls["calendar"]).text.replace("\r\n ", "")

    # Shown once: listings name the link by its prefix; the store keeps a hash.
    listed = member.get("/api/v1/feed-links")
    assert listed.status_code == 200 and token not in listed.text
    assert listed.json()[0]["page"] == "page-acme" and listed.json()[0]["urls"] is None
    assert listed.json()[0]["last_used_at"] is not None
    with rt.store.read() as conn:
        assert token not in str(conn.execute(sa.select(feed_tokens)).all())
    # And the access log never carries it.
    assert token not in redact_path(urls["rss"].removeprefix(BASE_URL))


def test_a_link_reads_only_its_own_page_and_never_another_customers(
    rt: Runtime, world: Any
) -> None:
    app, _admin = world
    outsider = _member(app, "globex")
    # Globex's stakeholder cannot make a link for Acme's page: the same 404 as no page.
    refused = _make_link(outsider, "page-acme")
    assert refused.status_code == 404 and "acme status" not in refused.text.lower()
    assert _make_link(outsider, "no-such-page").status_code == 404
    theirs = _make_link(outsider, "page-globex").json()["urls"]
    token = theirs["rss"].split("/feeds/", 1)[1].split("/", 1)[0]
    reader = TestClient(app, base_url=BASE_URL)
    for doc in ("history.rss", "history.atom", "maintenance.ics"):
        answer = reader.get(f"/p/page-acme/feeds/{token}/{doc}")
        assert answer.status_code == 404
        assert "acme" not in answer.text
        assert reader.get(f"/p/page-acme/feeds/bf_made-up-token/{doc}").status_code == 404
    assert reader.get(theirs["rss"]).status_code == 200


def test_a_link_stops_when_revoked_when_its_user_leaves_the_team_and_when_deactivated(
    rt: Runtime, world: Any
) -> None:
    app, admin = world
    member = _member(app, "acme")
    reader = TestClient(app, base_url=BASE_URL)
    first, second, third = (_make_link(member, "page-acme").json() for _ in range(3))

    assert (
        member.delete(f"/api/v1/feed-links/{first['id']}", headers=JSON_FROM_HERE).status_code
        == 204
    )
    assert reader.get(first["urls"]["rss"]).status_code == 404
    assert reader.get(second["urls"]["rss"]).status_code == 200
    # Another user cannot revoke (or learn of) someone's link.
    other = _member(app, "globex")
    gone = other.delete(f"/api/v1/feed-links/{second['id']}", headers=JSON_FROM_HERE)
    assert gone.status_code == 404
    assert reader.get(second["urls"]["rss"]).status_code == 200

    with rt.store.read() as conn:
        user_id = conn.execute(
            sa.select(users.c.id).where(users.c.email == "acme@example.test")
        ).scalar_one()
    # Taken off the page's team: the link asks engine.access as the user is now.
    _ok(app_client(app).patch(f"/api/v1/users/{user_id}", json={"teams": []}, headers=admin))
    assert reader.get(second["urls"]["rss"]).status_code == 404
    _ok(app_client(app).patch(f"/api/v1/users/{user_id}", json={"teams": ["acme"]}, headers=admin))
    assert reader.get(second["urls"]["calendar"]).status_code == 200

    # Deactivated: every link of the user is revoked, and stays so if the user comes back.
    _ok(app_client(app).patch(f"/api/v1/users/{user_id}", json={"active": False}, headers=admin))
    assert reader.get(third["urls"]["atom"]).status_code == 404
    _ok(app_client(app).patch(f"/api/v1/users/{user_id}", json={"active": True}, headers=admin))
    assert reader.get(third["urls"]["atom"]).status_code == 404
    with rt.store.read() as conn:
        assert all(row.revoked_at is not None for row in conn.execute(sa.select(feed_tokens)).all())


def app_client(app: Any) -> TestClient:
    return TestClient(app, base_url=BASE_URL)


def test_feed_links_are_a_users_and_an_api_key_has_none(rt: Runtime, world: Any) -> None:
    app, admin = world
    keyed = app_client(app)
    team_key = {"Authorization": f"Bearer {create_api_key(rt.store, name='k', team='acme')}"}
    for who in (admin, team_key):
        assert keyed.get("/api/v1/feed-links", headers=who).json() == []
        made = keyed.post("/api/v1/feed-links", json={"page": "page-acme"}, headers=who)
        assert made.status_code == 403
    assert app_client(app).get("/api/v1/feed-links").status_code == 401
    # A signed-in browser's cross-site request is refused, as for every cookie-borne change.
    member = _member(app, "acme")
    forged = member.post(
        "/api/v1/feed-links", json={"page": "page-acme"}, headers={"Origin": "https://evil.test"}
    )
    assert forged.status_code in (401, 403)


def test_the_account_page_makes_shows_once_and_revokes_a_link(rt: Runtime, world: Any) -> None:
    app, _admin = world
    member = _member(app, "acme")
    page = member.get("/admin/account")
    assert page.status_code == 200 and "acme status" in page.text and "globex" not in page.text
    made = member.post(
        "/admin/account/feed-links",
        data={"page": "page-acme", "csrf": form_csrf(member, "/admin/account")},
    )
    assert made.status_code == 201 and "shown once" in made.text
    url = made.text.split('id="link-rss">', 1)[1].split("<", 1)[0]
    assert app_client(app).get(url).status_code == 200
    again = member.get("/admin/account")
    assert url not in again.text and "/feeds/" not in again.text
    link_id = again.text.split("/admin/account/feed-links/", 1)[1].split("/", 1)[0]
    revoked = member.post(
        f"/admin/account/feed-links/{link_id}/revoke",
        data={"csrf": form_csrf(member, "/admin/account")},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    assert app_client(app).get(url).status_code == 404
