"""Host-header page selection: on a page's host only that page answers, at the root."""

from __future__ import annotations

from collections.abc import Callable

from engine.pagemodel import page_address
from pages.hosts import host_name, page_path, slug_for_pages_domain

from . import seed
from .conftest import App


def test_host_name_ignores_port_case_and_final_dot() -> None:
    assert host_name("Status.ACME.test:8443") == "status.acme.test"
    assert host_name("status.acme.test.") == "status.acme.test"
    assert host_name("[::1]:8000") == "[::1]"


def test_pages_domain_hosts_name_one_label_slugs() -> None:
    assert slug_for_pages_domain("acme.status.example.com", "status.example.com") == "acme"
    assert slug_for_pages_domain("status.example.com", "status.example.com") is None
    assert slug_for_pages_domain("a.b.status.example.com", "status.example.com") is None
    assert slug_for_pages_domain("acme.status.example.com", "") is None


def test_root_paths_map_to_the_page_and_the_rest_is_refused() -> None:
    assert page_path("acme", "/") == "/p/acme/"
    assert page_path("acme", "/history") == "/p/acme/history"
    assert page_path("acme", "/api/v2/summary.json") == "/p/acme/api/v2/summary.json"
    assert page_path("acme", "/p/acme/badge.svg") == "/p/acme/badge.svg"
    assert page_path("acme", "/p/other/") is None
    assert page_path("acme", "/api/v1/teams") is None
    assert page_path("acme", "/api/v1/tls/ask") is None
    assert page_path("acme", "/login") == "/login"


def test_admin_api_and_health_are_404_on_a_custom_domain(app: App) -> None:
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    host = {"Host": "status.acme.test:443"}
    for path in ("/api/v1/tls/ask?domain=status.acme.test", "/api/v1/status-pages/acme/domain"):
        assert app.client.get(path, headers=host).status_code == 404
    assert app.client.get("/healthz", headers=host).status_code == 404
    # Beacon's own host is untouched.
    assert app.client.get("/healthz").status_code == 200
    assert app.client.get("/api/v1/tls/ask?domain=status.acme.test").status_code == 200


def test_other_pages_are_404_on_a_page_host(make_app: Callable[..., App]) -> None:
    app = make_app(BEACON_PAGES_DOMAIN="status.example.com")
    seed.page(app.store, "acme")
    seed.page(app.store, "other", team_key="others")
    got = app.client.get("/p/other/api/v2/status.json", headers={"Host": "acme.status.example.com"})
    assert got.status_code == 404


def test_a_custom_domain_serves_its_page_at_the_root(app: App) -> None:
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    host = {"Host": "status.acme.test:8443"}
    doc = app.client.get("/api/v2/summary.json", headers=host).json()
    assert doc["page"]["url"] == "https://status.acme.test"
    assert app.client.get("/badge.svg", headers=host).status_code == 200
    assert app.client.get("/history.rss", headers=host).status_code == 200
    assert app.client.get("/p/acme/api/v2/status.json", headers=host).status_code == 200


def test_pages_domain_hosts_serve_their_own_page_only(make_app: Callable[..., App]) -> None:
    app = make_app(BEACON_PAGES_DOMAIN="status.example.com")
    seed.page(app.store, "acme")
    seed.page(app.store, "other", team_key="others")
    acme = {"Host": "acme.status.example.com"}
    doc = app.client.get("/api/v2/status.json", headers=acme).json()
    assert doc["page"]["name"] == "Acme Status"
    other = app.client.get("/api/v2/status.json", headers={"Host": "other.status.example.com"})
    assert other.json()["page"]["name"] == "Other Status"
    assert app.client.get("/p/other/badge.svg", headers=acme).status_code == 404
    # The pages domain itself and Beacon's own host are not page hosts.
    bare = {"Host": "status.example.com"}
    assert app.client.get("/p/other/api/v2/status.json", headers=bare).status_code == 200
    assert app.client.get("/api/v2/status.json", headers=bare).status_code == 404


def test_an_unknown_page_host_is_404(make_app: Callable[..., App]) -> None:
    app = make_app(BEACON_PAGES_DOMAIN="status.example.com")
    got = app.client.get("/api/v2/status.json", headers={"Host": "nope.status.example.com"})
    assert got.status_code == 404


def test_a_private_page_on_its_host_still_asks_for_credentials(app: App) -> None:
    seed.page(app.store, "acme", type="private", custom_domain="status.acme.test")
    host = {"Host": "status.acme.test"}
    assert app.client.get("/api/v2/status.json", headers=host).status_code == 401
    member = {**host, **app.key("platform")}
    assert app.client.get("/api/v2/status.json", headers=member).status_code == 200


def test_another_pages_cached_documents_are_404_on_a_custom_domain(app: App) -> None:
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    seed.page(app.store, "other", team_key="others")
    # Warm the page cache for "other", so its fast path could answer if asked.
    assert app.client.get("/p/other/api/v2/status.json").status_code == 200
    assert app.client.get("/p/other/api/v2/status.json").status_code == 200
    host = {"Host": "status.acme.test"}
    assert app.client.get("/p/other/api/v2/status.json", headers=host).status_code == 404
    assert app.client.get("/p/other/", headers=host).status_code == 404
    assert app.client.get("/api/v2/status.json", headers=host).json()["page"]["name"] == (
        "Acme Status"
    )


def test_links_to_a_page_use_its_own_host_under_the_pages_domain(
    make_app: Callable[..., App],
) -> None:
    app = make_app(
        BEACON_PAGES_DOMAIN="status.example.com", BEACON_BASE_URL="https://beacon.example.com"
    )
    seed.page(app.store, "acme")
    for host in ("acme.status.example.com", "beacon.example.com"):
        doc = app.client.get("/p/acme/api/v2/summary.json", headers={"Host": host}).json()
        assert doc["page"]["url"] == "https://acme.status.example.com"


def test_page_address_prefers_custom_domain_then_pages_domain_then_base_url() -> None:
    base = "http://localhost:8000/"
    assert (
        page_address("acme", "status.acme.test", base_url=base, pages_domain="s.example")
        == "https://status.acme.test"
    )
    # The pages domain keeps the base URL's scheme and port (a local setup on :8000).
    assert (
        page_address("acme", None, base_url=base, pages_domain="s.example")
        == "http://acme.s.example:8000"
    )
    assert page_address("acme", "", base_url=base) == "http://localhost:8000/p/acme"
