"""The site's root and the error pages a browser meets, while API clients keep their JSON."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from engine.runtime import Runtime
from engine.settings import Settings
from tests import factories as factory

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_the_root_redirects_to_the_only_public_page(rt: Runtime, client: TestClient) -> None:
    with rt.store.begin() as conn:
        team = factory.team(conn)
        factory.page(conn, team, "acme", name="ACME Status")
        factory.page(conn, team, "internal", name="Internal", type="private")
        factory.page(conn, team, "draft", name="Draft", active=False)
    answer = client.get("/", headers=BROWSER, follow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["location"] == "/p/acme/"


def test_the_root_lists_active_public_pages_and_never_private_or_inactive_ones(
    rt: Runtime, client: TestClient
) -> None:
    with rt.store.begin() as conn:
        team = factory.team(conn)
        factory.page(conn, team, "acme", name="ACME Status")
        factory.page(conn, team, "globex", name="Globex <Status>")
        factory.page(conn, team, "internal", name="Internal Secret", type="private")
        factory.page(conn, team, "draft", name="Draft Page", active=False)
    answer = client.get("/", headers=BROWSER)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert 'href="/p/acme/"' in answer.text and 'href="/p/globex/"' in answer.text
    assert "Globex &lt;Status&gt;" in answer.text  # escaped
    assert "Internal" not in answer.text and "Draft" not in answer.text
    assert "script" not in answer.text  # nothing inline for the CSP to refuse


def test_the_root_without_pages_says_so(client: TestClient) -> None:
    answer = client.get("/", headers=BROWSER)
    assert answer.status_code == 200
    assert "No status page is published here yet" in answer.text


def test_a_browser_gets_an_html_404_and_an_api_client_json(rt: Runtime, client: TestClient) -> None:
    page = client.get("/no-such-page", headers=BROWSER)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text and "<script" not in page.text
    assert "default-src" in page.headers["content-security-policy"]
    assert client.get("/p/nobody/", headers=BROWSER).headers["content-type"].startswith("text/html")
    for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        answer = client.get("/no-such-page", headers=accept)
        assert answer.status_code == 404
        assert answer.json()["error"]["status"] == 404
    # Under an API path a browser still gets the API's JSON.
    for path in ("/api/v1/nothing-here", "/p/nobody/api/v2/summary.json"):
        answer = client.get(path, headers=BROWSER)
        assert answer.status_code == 404
        assert answer.json()["error"]["status"] == 404


def test_a_wrong_method_is_an_html_405_for_a_browser(client: TestClient) -> None:
    answer = client.post("/healthz", headers=BROWSER)
    assert answer.status_code == 405
    assert "Not available this way" in answer.text
    assert client.post("/healthz").json()["error"]["status"] == 405


def test_an_unhandled_error_is_an_html_500_for_a_browser(rt: Runtime) -> None:
    from pages.app import create_app

    app = create_app(rt)

    async def boom(request: object) -> None:
        raise RuntimeError("a bug")

    app.add_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as browser:
        page = browser.get("/boom", headers=BROWSER)
        assert page.status_code == 500
        assert "Something went wrong" in page.text and "a bug" not in page.text
        assert browser.get("/boom").json()["error"]["status"] == 500


def test_on_a_page_host_another_pages_path_is_an_html_404_for_a_browser(
    tmp_path: object, make_runtime: Callable[..., Runtime]
) -> None:
    from pages.app import create_app

    settings = Settings.from_env(
        {"BEACON_DATA_DIR": f"{tmp_path}/data", "BEACON_PAGES_DOMAIN": "status.example.com"}
    )
    rt = make_runtime(settings)
    with rt.store.begin() as conn:
        team = factory.team(conn)
        factory.page(conn, team, "acme")
        factory.page(conn, team, "other", name="Other")
    host = {"Host": "acme.status.example.com"}
    with TestClient(create_app(rt)) as client:
        page = client.get("/p/other/", headers={**host, **BROWSER})
        assert page.status_code == 404 and "Page not found" in page.text
        assert "default-src" in page.headers["content-security-policy"]
        api = client.get("/p/other/", headers=host)
        assert api.status_code == 404 and api.json()["error"]["status"] == 404
        assert client.get("/", headers={**host, **BROWSER}).status_code == 200  # its own page
