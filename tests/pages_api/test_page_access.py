"""Every page route of a private and of an inactive page gives DESIGN.md's answer to
anonymous visitors, other teams' keys and members' keys, with its cache headers."""

from __future__ import annotations

import pytest

from . import seed
from .conftest import App

PAGE_ROUTES = [
    "api/v2/summary.json",
    "api/v2/status.json",
    "api/v2/components.json",
    "api/v2/incidents.json",
    "api/v2/incidents/unresolved.json",
    "api/v2/scheduled-maintenances.json",
    "api/v2/scheduled-maintenances/upcoming.json",
    "api/v2/scheduled-maintenances/active.json",
    "history.rss",
    "history.atom",
    "maintenance.ics",
    "badge.svg",
    "embed.js",
]
PRIVATE = {"cache-control": "private, no-store", "vary": "Cookie, Authorization"}


def private_headers(response: object) -> dict[str, str]:
    headers = response.headers  # type: ignore[attr-defined]
    return {k: headers.get(k) for k in PRIVATE}


@pytest.fixture
def pages(any_app: App) -> App:
    seed.page(any_app.store, "secret", team_key="acme", type="private")
    seed.page(any_app.store, "draft", team_key="acme", active=False)
    with any_app.store.begin() as conn:
        seed.team(conn, "other")
    return any_app


def answers(pages: App, slug: str, headers: dict[str, str]) -> dict[str, tuple[int, bool, bool]]:
    """Per route: (status, private cache headers exactly, CORS header present)."""
    found = {}
    for route in PAGE_ROUTES:
        response = pages.client.get(f"/p/{slug}/{route}", headers=headers)
        found[route] = (
            response.status_code,
            private_headers(response) == PRIVATE,
            "access-control-allow-origin" in response.headers,
        )
    return found


def everywhere(status: int) -> dict[str, tuple[int, bool, bool]]:
    return {route: (status, True, False) for route in PAGE_ROUTES}


def test_private_page_answers_401_to_anonymous_visitors(pages: App) -> None:
    assert answers(pages, "secret", {}) == everywhere(401)


def test_private_page_is_404_to_another_teams_key(pages: App) -> None:
    assert answers(pages, "secret", pages.key("other")) == everywhere(404)


def test_private_page_answers_members_and_admins_privately(pages: App) -> None:
    assert answers(pages, "secret", pages.key("acme")) == everywhere(200)
    assert answers(pages, "secret", pages.key(admin=True)) == everywhere(200)


def test_inactive_page_is_404_to_anonymous_and_other_teams(pages: App) -> None:
    assert answers(pages, "draft", {}) == everywhere(404)
    assert answers(pages, "draft", pages.key("other")) == everywhere(404)


def test_inactive_page_answers_members_and_admins_privately(pages: App) -> None:
    assert answers(pages, "draft", pages.key("acme")) == everywhere(200)
    assert answers(pages, "draft", pages.key(admin=True)) == everywhere(200)


def test_public_page_is_open_cached_publicly_and_cors_open(pages: App) -> None:
    seed.page(pages.store, "open", team_key="acme")
    found = answers(pages, "open", {})
    assert found == {route: (200, False, True) for route in PAGE_ROUTES}


def test_an_invalid_key_counts_as_anonymous(pages: App) -> None:
    response = pages.client.get(
        "/p/secret/api/v2/status.json", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401


def test_an_unknown_page_is_404(pages: App) -> None:
    assert pages.client.get("/p/nothing/api/v2/status.json").status_code == 404


def test_a_signed_in_member_user_sees_the_private_page(pages: App) -> None:
    """Sessions (the login flow is another branch's) count the user's teams."""
    from engine.accounts import create_user
    from pages.auth import principal_for_user

    user_id = create_user(pages.store, "ann@acme.test", role="stakeholder", teams=["acme"])
    who = principal_for_user(pages.store, user_id)
    assert who is not None
    from engine.access import Want, check

    with pages.store.read() as conn:
        assert check(conn, "secret", who, Want.HTML).allowed
        assert check(conn, "secret", who, Want.HTML).headers["Cache-Control"] == (
            "private, no-store"
        )


HTML_ROUTES = ["", "history"]


def html_answers(pages: App, slug: str, headers: dict[str, str]) -> dict[str, tuple[int, bool]]:
    found = {}
    for route in HTML_ROUTES:
        response = pages.client.get(f"/p/{slug}/{route}", headers=headers, follow_redirects=False)
        found[route] = (response.status_code, private_headers(response) == PRIVATE)
    return found


def test_private_pages_html_sends_anonymous_visitors_to_login(pages: App) -> None:
    assert html_answers(pages, "secret", {}) == {r: (303, True) for r in HTML_ROUTES}
    response = pages.client.get("/p/secret/history", follow_redirects=False)
    assert response.headers["location"] == "/login?next=/p/secret/history"
    # Live updates are data: 401, never a redirect.
    live = pages.client.get("/p/secret/live")
    assert live.status_code == 401 and private_headers(live) == PRIVATE


def test_private_and_inactive_pages_html_for_outsiders_and_members(pages: App) -> None:
    for slug in ("secret", "draft"):
        assert html_answers(pages, slug, pages.key("other")) == {
            r: (404, True) for r in HTML_ROUTES
        }
        assert html_answers(pages, slug, pages.key("acme")) == {r: (200, True) for r in HTML_ROUTES}
    assert html_answers(pages, "draft", {}) == {r: (404, True) for r in HTML_ROUTES}
    assert pages.client.get("/p/draft/live").status_code == 404


def test_documents_revalidate_with_etags_for_members_too(pages: App) -> None:
    member = pages.key("acme")
    first = pages.client.get("/p/secret/api/v2/summary.json", headers=member)
    etag = first.headers["etag"]
    again = pages.client.get(
        "/p/secret/api/v2/summary.json", headers={**member, "If-None-Match": etag}
    )
    assert again.status_code == 304
    assert private_headers(again) == PRIVATE
    head = pages.client.head("/p/secret/badge.svg", headers=member)
    assert head.status_code == 200 and head.content == b""
    # Without credentials the validator does not help: still 401.
    anonymous = pages.client.get("/p/secret/api/v2/summary.json", headers={"If-None-Match": etag})
    assert anonymous.status_code == 401
