"""Who sees what of /admin/: anonymous visitors are sent to sign in, stakeholders see only
their pages' links, a responder of one team sees nothing of another's private team, and a
form posted without the session's CSRF token changes nothing."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.tables import status_pages

from .conftest import World, csrf_of, sign_in


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


def test_a_form_without_the_csrf_token_changes_nothing(
    client: TestClient, rt: Runtime, world: World
) -> None:
    sign_in(client, "admin@example.test")
    form = {"name": "Forged", "slug": "forged", "type": "public", "teams": "platform"}
    answer = client.post("/admin/pages/new", data=form, follow_redirects=False)
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert pages_count(rt) == 0
    token = csrf_of(client.get("/admin/pages/new").text)
    answer = client.post("/admin/pages/new", data={**form, "csrf": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert pages_count(rt) == 1


def test_a_bad_form_is_shown_again_with_its_errors_inline(
    client: TestClient, rt: Runtime, world: World
) -> None:
    sign_in(client, "ops@example.test")
    token = csrf_of(client.get("/admin/pages/new").text)
    form = {"csrf": token, "name": "", "slug": "Not A Slug!", "teams": "acme"}
    answer = client.post("/admin/pages/new", data=form)
    assert answer.status_code == 422
    assert 'id="slug-error"' in answer.text and 'id="name-error"' in answer.text
    # acme is private and not the responder's: refused like a team that does not exist.
    form = {"csrf": token, "name": "X", "slug": "x", "teams": "acme"}
    answer = client.post("/admin/pages/new", data=form)
    assert answer.status_code == 422
    assert "unknown team &#39;acme&#39;" in answer.text
    assert pages_count(rt) == 0


def test_another_teams_private_page_is_not_found_by_id(
    client: TestClient, rt: Runtime, world: World
) -> None:
    make_pages(client, rt)
    with rt.store.read() as conn:
        acme = conn.execute(
            sa.select(status_pages.c.id).where(status_pages.c.slug == "acme")
        ).scalar()
    sign_in(client, "ops@example.test")
    assert client.get(f"/admin/pages/{acme}").status_code == 404
    assert client.get(f"/admin/pages/{2**40}").status_code == 404
    token = csrf_of(client.get("/admin/pages").text)
    answer = client.post(f"/admin/pages/{acme}/activate", data={"csrf": token})
    assert answer.status_code == 404
    assert client.get(f"/admin/pages/{acme}/domain").status_code == 404
    assert client.get(f"/admin/pages/{acme}/domain/check").status_code == 404
    answer = client.post(
        f"/admin/pages/{acme}/domain", data={"csrf": token, "custom_domain": "x.example.org"}
    )
    assert answer.status_code == 404


def test_a_responder_cannot_open_or_read_another_private_teams_incidents(
    client: TestClient, rt: Runtime, world: World
) -> None:
    key = create_api_key(rt.store, name="seed", admin=True)
    made = client.post(
        "/api/v1/incidents",
        json={"team": "acme", "title": "ACME down", "impacts": {"portal": "major_outage"}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert made.status_code == 201, made.text
    sign_in(client, "ops@example.test")
    assert "ACME down" not in client.get("/admin/incidents").text
    assert client.get(f"/admin/incidents/{made.json()['id']}").status_code == 404
    form = client.get("/admin/incidents/new").text
    assert "ACME Portal" not in form and "acme" not in form
    token = csrf_of(form)
    answer = client.post(
        "/admin/incidents/new",
        data={
            "csrf": token,
            "team": "acme",
            "title": "x",
            f"impact-{world.service_ids['portal']}": "degraded",
        },
    )
    assert answer.status_code == 422
    answer = client.post(
        f"/admin/incidents/{made.json()['id']}/updates",
        data={"csrf": token, "status": "resolved", "message": "x"},
    )
    assert answer.status_code == 404


def test_a_responder_cannot_set_or_release_another_private_teams_service(
    client: TestClient, world: World
) -> None:
    sign_in(client, "ops@example.test")
    portal = world.service_ids["portal"]
    assert "ACME" not in client.get("/admin/services").text
    assert client.get(f"/admin/services/{portal}").status_code == 404
    token = csrf_of(client.get("/admin/services").text)
    answer = client.post(
        f"/admin/services/{portal}/status", data={"csrf": token, "status": "major_outage"}
    )
    assert answer.status_code == 404
    answer = client.post(f"/admin/services/{portal}/claims/1/release", data={"csrf": token})
    assert answer.status_code == 404


def test_a_responder_cannot_see_test_or_rotate_another_private_teams_source(
    client: TestClient, rt: Runtime, world: World
) -> None:
    key = create_api_key(rt.store, name="seed", admin=True)
    made = client.post(
        "/api/v1/alert-sources",
        json={"key": "acme-kuma", "name": "ACME Kuma", "type": "uptime-kuma", "team": "acme"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert made.status_code == 201, made.text
    source_id = made.json()["id"]
    sign_in(client, "ops@example.test")
    assert "ACME Kuma" not in client.get("/admin/sources").text
    assert client.get(f"/admin/sources/{source_id}").status_code == 404
    token = csrf_of(client.get("/admin/sources").text)
    for action in ("rotate", "test"):
        answer = client.post(f"/admin/sources/{source_id}/{action}", data={"csrf": token})
        assert answer.status_code == 404, action
    form = {"csrf": token, "type": "uptime-kuma", "team": "acme", "key": "x", "name": "X"}
    answer = client.post("/admin/sources/new", data=form)
    assert answer.status_code == 422 and "unknown team" in answer.text


def test_teams_users_and_other_teams_keys_are_out_of_a_responders_reach(
    client: TestClient, rt: Runtime, world: World
) -> None:
    acme_key = create_api_key(rt.store, name="acme bot", team="acme")
    assert acme_key
    sign_in(client, "ops@example.test")
    assert client.get("/admin/teams").status_code == 404
    assert client.get("/admin/users/1").status_code == 404
    assert "acme bot" not in client.get("/admin/keys").text
    token = csrf_of(client.get("/admin/keys").text)
    with rt.store.read() as conn:
        from engine.tables import api_keys

        key_id = conn.execute(
            sa.select(api_keys.c.id).where(api_keys.c.name == "acme bot")
        ).scalar()
    assert client.post(f"/admin/keys/{key_id}/revoke", data={"csrf": token}).status_code == 404
    answer = client.post("/admin/keys", data={"csrf": token, "name": "x", "admin": "1"})
    assert answer.status_code == 422 and "only an admin key creates admin keys" in answer.text
    answer = client.post(
        "/admin/users/invite", data={"csrf": token, "email": "a@b.c", "role": "admin"}
    )
    assert answer.status_code == 404
    client.cookies.clear()
    sign_in(client, "viewer@example.test")
    for path in ("/admin/keys", "/admin/audit", "/admin/services", "/admin/incidents"):
        assert client.get(path).status_code == 404, path


def audit_count(rt: Runtime) -> Any:
    from engine.tables import audit_log

    with rt.store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar()


def test_every_admin_post_needs_the_forms_csrf_token(
    client: TestClient, rt: Runtime, world: World
) -> None:
    """Each POST route of /admin/ refuses a signed-in browser's request without the token:
    a plain form (the session is hidden from it: 403) and a same-origin JSON body (which
    the session guard lets through: the view checks the form's token itself)."""
    from starlette.routing import Route

    from pages.admin_ui import routes

    make_pages(client, rt)
    sign_in(client, "admin@example.test")
    before = audit_count(rt)
    posts = [r.path for r in routes if isinstance(r, Route) and "POST" in (r.methods or set())]
    assert len(posts) >= 20
    for template in posts:
        path = re.sub(r"\{\w+:int\}", "1", template)
        answer = client.post(path, data={"name": "x", "status": "major_outage"})
        assert answer.status_code == 403, (path, answer.status_code)
        answer = client.post(
            path,
            json={"name": "x"},
            headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        )
        assert answer.status_code in (403, 404), (path, answer.status_code)
    assert audit_count(rt) == before


def test_no_admin_form_answers_500_to_garbage(
    client: TestClient, rt: Runtime, world: World
) -> None:
    """Every POST route, with a valid token and nonsense in every field a form of Beacon's
    has: a 4xx (or a redirect) with a message, never a 500."""
    from starlette.routing import Route

    from pages.admin_ui import routes

    make_pages(client, rt)
    sign_in(client, "admin@example.test")
    token = csrf_of(client.get("/admin/pages").text)
    names = (
        "name slug type teams services time_zone new_service_name new_service_key team title "
        "message status notify summary starts_at ends_at on_end until reason incident "
        "custom_domain key signing_secret rate_limit settings text-0 count version email "
        "role active admin private q channel position-1 impact-1"
    ).split()
    posts = [r.path for r in routes if isinstance(r, Route) and "POST" in (r.methods or set())]
    for junk in ("\x00<script>x</script>", "<script>x</script>" + "é" * 300, "-1"):
        fields = {name: junk for name in names}
        for template in posts:
            for ident in ("1", "2", "2147483647", "99999999999"):
                path = re.sub(r"\{\w+:int\}", ident, template)
                answer = client.post(path, data={"csrf": token, **fields}, follow_redirects=False)
                assert answer.status_code < 500, (path, answer.status_code, answer.text[-500:])
    for path in ("/admin/audit?before=9" + "9" * 30, "/admin/pages/1/subscribers?q=%25_%00"):
        assert client.get(path).status_code < 500, path


def test_the_home_shows_what_needs_attention_to_managers_only(
    client: TestClient, rt: Runtime, world: World
) -> None:
    make_pages(client, rt)
    key = create_api_key(rt.store, name="seed2", admin=True)
    auth = {"Authorization": f"Bearer {key}"}
    for team, title, service in (
        ("platform", "API slow", "api"),
        ("acme", "Portal down", "portal"),
    ):
        body = {"team": team, "title": title, "impacts": {service: "degraded"}}
        assert client.post("/api/v1/incidents", json=body, headers=auth).status_code == 201
    client.cookies.clear()
    sign_in(client, "ops@example.test")
    home = client.get("/admin/").text
    attention = home.split('id="attention-h"', 1)[1].split("</section>", 1)[0]
    assert "API slow" in attention and "Public API" in attention
    assert "Shop Status" in attention  # public, not active yet
    assert "Portal" not in home  # acme is private and not ops's
    client.cookies.clear()
    sign_in(client, "viewer@example.test")
    home = client.get("/admin/").text
    assert "attention" not in home and "Portal down" not in home
