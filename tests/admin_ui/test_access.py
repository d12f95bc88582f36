"""Who sees what of /admin/: anonymous visitors are sent to sign in, stakeholders see only
their pages' links, a responder of one team sees nothing of another's private team, and a
form posted without the session's CSRF token changes nothing."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.tables import status_pages

from .conftest import World, sign_in


def make_pages(client: TestClient, rt: Runtime) -> None:
    key = create_api_key(rt.store, name="seed", admin=True)
    auth = {"Authorization": f"Bearer {key}"}
    for body in (
        {"slug": "shop", "name": "Shop Status", "teams": ["platform"], "services": ["api"]},
        {"slug": "acme", "name": "ACME Status", "type": "private", "teams": ["acme"]},
    ):
        answer = client.post("/api/v1/pages", json=body, headers=auth)
        assert answer.status_code == 201, answer.text
    client.cookies.clear()


def test_an_anonymous_visitor_is_sent_to_sign_in(client: TestClient) -> None:
    answer = client.get("/admin/pages", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/admin/pages"


def test_a_stakeholder_sees_their_pages_links_and_nothing_that_manages(
    client: TestClient, rt: Runtime, world: World
) -> None:
    make_pages(client, rt)
    sign_in(client, "viewer@example.test")
    home = client.get("/admin/")
    assert home.status_code == 200
    assert "ACME Status" in home.text and "Shop Status" not in home.text
    assert "Create status page" not in home.text and 'nav class="main"' not in home.text
    assert client.get("/admin/pages").status_code == 404


def test_a_responder_sees_nothing_of_another_teams_private_pages(
    client: TestClient, rt: Runtime, world: World
) -> None:
    make_pages(client, rt)
    sign_in(client, "ops@example.test")
    listing = client.get("/admin/pages").text
    assert "Shop Status" in listing
    assert "ACME" not in listing and "acme" not in listing


def test_the_admin_pages_carry_the_security_headers_and_are_never_cached(
    client: TestClient,
) -> None:
    sign_in(client, "admin@example.test")
    answer = client.get("/admin/pages")
    assert answer.headers["cache-control"] == "private, no-store"
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "<script>" not in answer.text  # no inline script: only /admin/static/ files
    assert client.get("/admin/static/htmx.min.js").status_code == 200
    assert client.get("/admin/static/../app.py").status_code == 404
    assert client.get("/admin/static/page.css").status_code == 404


def pages_count(rt: Runtime) -> Any:
    with rt.store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(status_pages)).scalar()
