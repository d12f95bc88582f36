"""GET /api/v1/tls/ask: Caddy may get a certificate only for an active page's host."""

from __future__ import annotations

from collections.abc import Callable

from . import seed
from .conftest import App


def test_it_allows_an_active_pages_custom_domain(app: App) -> None:
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    got = app.client.get("/api/v1/tls/ask", params={"domain": "status.acme.test"})
    assert got.status_code == 200
    assert got.json() == {"domain": "status.acme.test", "page": "acme"}


def test_it_refuses_an_unknown_domain(app: App) -> None:
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    assert app.client.get("/api/v1/tls/ask?domain=evil.test").status_code == 404


def test_it_refuses_an_inactive_pages_domain(app: App) -> None:
    seed.page(app.store, "draft", active=False, custom_domain="draft.acme.test")
    assert app.client.get("/api/v1/tls/ask?domain=draft.acme.test").status_code == 404


def test_it_allows_page_hosts_under_the_pages_domain(make_app: Callable[..., App]) -> None:
    app = make_app(BEACON_PAGES_DOMAIN="status.example.com")
    seed.page(app.store, "acme")
    seed.page(app.store, "draft", active=False)
    ask = "/api/v1/tls/ask?domain="
    assert app.client.get(ask + "acme.status.example.com").status_code == 200
    assert app.client.get(ask + "ACME.Status.Example.com.").status_code == 200
    assert app.client.get(ask + "draft.status.example.com").status_code == 404
    assert app.client.get(ask + "nope.status.example.com").status_code == 404
    assert app.client.get(ask + "a.b.status.example.com").status_code == 404


def test_it_needs_a_domain(app: App) -> None:
    got = app.client.get("/api/v1/tls/ask")
    assert got.status_code == 400
    assert "domain" in got.json()["error"]["message"]


def test_a_custom_domain_matches_whatever_its_case(app: App) -> None:
    seed.page(app.store, "acme", custom_domain="Status.ACME.test")
    assert app.client.get("/api/v1/tls/ask?domain=status.acme.test").status_code == 200
    got = app.client.get("/api/v2/status.json", headers={"Host": "STATUS.acme.test"})
    assert got.status_code == 200
