"""The page in a real browser (Debian's chromium through Playwright) against `beacon serve`:
it shows its services, follows a status change live without a reload, and axe-core finds no
serious or critical accessibility violations in light or dark mode."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from engine.accounts import create_api_key
from engine.db import Store
from engine.tables import services
from tests import factories as factory
from tests.browsers import AXE, chromium
from tests.conftest import FIXTURES, ROOT, need
from tests.support import data_store, serve

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store, dict[str, Any]]]:
    """A seeded data directory and `beacon serve` on it: (base URL, store, seeded ids)."""
    data = tmp_path_factory.mktemp("served") / "data"
    with data_store(data, upgrade=True) as store:
        with store.begin() as conn:
            ids = factory.big_page(conn, datetime.now(UTC), services_count=12, incidents_count=3)
        ids["admin_key"] = create_api_key(store, name="browser-test", admin=True)
        with serve(data) as base:
            yield base, store, ids


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store, str]]:
    """`beacon serve --config examples/beacon.yaml`: (base URL, store, an admin API key)."""
    data = tmp_path_factory.mktemp("example") / "data"
    with data_store(data, upgrade=True) as store:
        key = create_api_key(store, name="browser-test", admin=True)
        with serve(data, "--config", str(ROOT / "examples" / "beacon.yaml")) as base:
            yield base, store, key


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def serious_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_the_example_page_shows_its_services_and_follows_a_change_live(
    example: Any, browser: Any
) -> None:
    base, store, key = example
    page = browser.new_page()
    page.goto(f"{base}/p/northwind/")
    names = page.locator(".c .nm").all_text_contents()
    assert names == [
        "Website",
        "Web App",
        "Public API",
        "Sign-in",
        "Email Delivery",
        "Outbound Webhooks",
    ]
    assert page.locator(".bar").count() == 6
    assert page.evaluate("document.querySelector('.brand img').naturalWidth") > 0  # the logo
    page.evaluate("window.beaconMarker = 'no reload'")
    page.wait_for_timeout(500)  # the live stream's first message arrives on connect

    with store.read() as conn:
        api = conn.execute(sa.select(services.c.id).where(services.c.key == "api")).scalar()
    # The change arrives over HTTP (a manual override on the admin API) and travels the
    # way a webhook's does once rules act on it: committed with its outbox row, then
    # rendered by the workers into the page cache, then pushed to the open page.
    started = time.perf_counter()
    answer = httpx.put(
        f"{base}/api/v1/services/{api}/override",
        json={"status": "major_outage"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200, answer.text
    page.wait_for_function(
        "() => [...document.querySelectorAll('.c')].some(c =>"
        " c.querySelector('.nm').textContent === 'Public API' &&"
        " c.querySelector('.st').textContent === 'Major Outage')",
        timeout=10_000,
    )
    seconds = time.perf_counter() - started
    assert page.evaluate("window.beaconMarker") == "no reload"
    assert "Partial System Outage" in page.locator(".banner").text_content()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "live-update.txt").write_text(f"status change to updated page: {seconds:.3f} s\n")
    print(f"status change shown without reload after {seconds:.3f} s")
    page.close()


def test_keyboard_focus_on_a_bar_shows_the_days_details(served: Any, browser: Any) -> None:
    base, _store, _ids = served
    page = browser.new_page()
    page.goto(f"{base}/p/acme/")
    first_bar = page.locator(".bar i[tabindex='0']").first
    first_bar.focus()
    tip = page.locator("#tip")
    assert tip.is_visible()
    assert "uptime" in tip.text_content() or "No data" in tip.text_content()
    # Today on Service 0 has the open incident: its title is in the day's details.
    assert "Elevated errors on Service 0" in tip.text_content()
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.dataset.i") == "88"
    assert tip.is_visible() and "Elevated errors" not in tip.text_content()
    page.keyboard.press("Escape")
    assert not tip.is_visible()
    # The mouse shows the same details.
    page.locator(".bar").nth(1).locator("i").nth(89).hover()
    assert tip.is_visible() and "uptime" in tip.text_content()
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations(
    served: Any, example: Any, browser: Any, scheme: str
) -> None:
    base, _store, _ids = served
    # bypass_csp: axe-core is injected inline by the test, which the page's CSP (rightly)
    # refuses; the page's own script loads as a file either way.
    page = browser.new_page(
        color_scheme=scheme, viewport={"width": 1100, "height": 900}, bypass_csp=True
    )
    page.goto(f"{base}/p/acme/")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{scheme}.png"), full_page=True)
    assert serious_violations(page) == []
    page.goto(f"{example[0]}/p/northwind/")
    page.screenshot(path=str(ARTIFACTS / f"example-{scheme}.png"), full_page=True)
    assert serious_violations(page) == []
    phone = browser.new_page(
        color_scheme=scheme, viewport={"width": 375, "height": 800}, bypass_csp=True
    )
    for path, shot in (("", "page"), ("history", "history")):
        phone.goto(f"{base}/p/acme/{path}")
        phone.screenshot(path=str(ARTIFACTS / f"{shot}-{scheme}-phone.png"), full_page=True)
        assert serious_violations(phone) == []
        # Responsive: nothing wider than the phone's screen.
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    page.close()
    phone.close()


def test_a_phone_shows_the_last_30_days(served: Any, browser: Any) -> None:
    """Issue 19: 90 bars at 375 px were hairlines; a phone shows 30 days, as Statuspage
    does, with the figure over those days. The screenshot is kept in test-artifacts/."""
    base, _store, _ids = served
    phone = browser.new_page(viewport={"width": 375, "height": 800})
    phone.goto(f"{base}/p/acme/")
    bars = phone.locator(".bar").first
    assert bars.locator("i").count() == 30
    widths = phone.evaluate(
        "[...document.querySelector('.bar').children].map(i => i.getBoundingClientRect().width)"
    )
    assert min(widths) >= 5  # wide enough to see and to tap near
    legend = phone.evaluate("getComputedStyle(document.querySelector('.ul'), '::before').content")
    assert legend == '"30 days ago"'
    assert phone.locator(".u30").first.is_visible() and not phone.locator(".u90").first.is_visible()
    # The last day is today, as on a wide screen; the arrow keys stay within the 30 days.
    bars.locator("i[tabindex='0']").focus()
    assert phone.evaluate("document.activeElement.dataset.i") == "89"
    phone.keyboard.press("Home")
    assert phone.evaluate("document.activeElement.dataset.i") == "60"
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "page-phone-30-days.png"), full_page=True)
    # Without JavaScript the runs of days show the same 30.
    bare = browser.new_page(viewport={"width": 375, "height": 800}, java_script_enabled=False)
    bare.goto(f"{base}/p/acme/")
    shown = bare.evaluate(
        "[...document.querySelector('.bar').children]"
        ".filter(i => getComputedStyle(i).display !== 'none').length"
    )
    hidden_days = bare.evaluate(
        "[...document.querySelectorAll('.bar')[0].children]"
        ".filter(i => getComputedStyle(i).display === 'none')"
        ".reduce((n, i) => n + +i.className.match(/f(\\d+)/)[1], 0)"
    )
    assert shown >= 1 and hidden_days == 60
    bare.screenshot(path=str(ARTIFACTS / "page-phone-30-days-no-js.png"), full_page=True)
    phone.close()
    bare.close()


def test_artifacts_dir_is_ignored_by_git() -> None:
    need(shutil.which("git") is not None, "git is not installed")
    out = subprocess.run(
        ["git", "check-ignore", "test-artifacts/page-light.png"], cwd=ROOT, capture_output=True
    )
    assert out.returncode == 0


def test_a_webhook_turns_a_service_down_on_the_open_page(example: Any, browser: Any) -> None:
    """The whole path: Uptime Kuma's webhook -> intake -> rules -> status -> render -> page."""
    import json

    base, _store, _key = example
    page = browser.new_page()
    page.goto(f"{base}/p/northwind/")
    page.evaluate("window.beaconMarker = 'no reload'")
    page.wait_for_timeout(500)
    body = json.loads((FIXTURES / "alert_sources" / "uptime-kuma" / "down_v1_23.json").read_text())
    # examples/rules/uptime.yaml: a monitor tagged service:<key> marks that service down.
    body["monitor"]["name"] = "Sign-in check"
    body["monitor"]["tags"] = [{"name": "service", "value": "auth", "color": "#000"}]
    started = time.perf_counter()
    answer = httpx.post(f"{base}/api/v1/events/example-uptime-kuma-key-change-me", json=body)
    assert answer.status_code == 202, answer.text
    page.wait_for_function(
        "() => [...document.querySelectorAll('.c')].some(c =>"
        " c.querySelector('.nm').textContent === 'Sign-in' &&"
        " c.querySelector('.st').textContent === 'Partial Outage')",
        timeout=10_000,
    )
    seconds = time.perf_counter() - started
    assert page.evaluate("window.beaconMarker") == "no reload"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "webhook-update.txt").write_text(f"webhook to updated page: {seconds:.3f} s\n")
    print(f"webhook shown without reload after {seconds:.3f} s")
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_root_and_an_unknown_page_read_as_pages_in_a_browser(
    served: Any, browser: Any, scheme: str
) -> None:
    """Issue 19: no raw JSON in a browser. `/` leads to the one public page; an unknown page
    is a readable 404 that axe-core finds nothing serious in."""
    base, _store, _ids = served
    page = browser.new_page(color_scheme=scheme, bypass_csp=True)
    page.goto(f"{base}/")
    assert page.url == f"{base}/p/acme/"
    answer = page.goto(f"{base}/no-such-page")
    assert answer is not None and answer.status == 404
    assert page.title().startswith("Page not found")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"not-found-{scheme}.png"))
    assert serious_violations(page) == []
    page.close()
