"""The page in a real browser (Debian's chromium through Playwright) against `beacon serve`:
it shows its services, follows a status change live without a reload, and axe-core finds no
serious or critical accessibility violations in light or dark mode."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import migrate
from engine.db import Store, create_store
from engine.settings import Settings
from engine.tables import services
from tests.conftest import ROOT, need
from tests.support import serve

from . import factory

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store, dict[str, Any]]]:
    """A seeded data directory and `beacon serve` on it: (base URL, store, seeded ids)."""
    data = tmp_path_factory.mktemp("served") / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    with store.begin() as conn:
        ids = factory.big_page(conn, datetime.now(UTC), services_count=12, incidents_count=3)
    try:
        with serve(data) as base:
            yield base, store, ids
    finally:
        store.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    need(AXE.exists(), "axe-core is not installed (npm install --prefix tests/pages_html)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def serious_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_the_page_shows_services_and_follows_a_change_live(served: Any, browser: Any) -> None:
    base, store, ids = served
    page = browser.new_page()
    page.goto(f"{base}/p/acme/")
    assert page.locator(".c .n").count() == 12
    assert page.get_by_text("Service 11", exact=True).is_visible()
    assert page.locator(".bar i").count() == 12 * 90  # the bars, built per day
    page.wait_for_function("document.querySelector('#main') !== null")
    page.evaluate("window.beaconMarker = 'no reload'")
    # Wait for the live stream before changing anything (its first message is on connect).
    page.wait_for_timeout(500)

    target = ids["services"][4]
    started = time.perf_counter()
    with store.begin() as conn:
        factory.set_status(conn, target, "major_outage", datetime.now(UTC))
        name = conn.execute(sa.select(services.c.name).where(services.c.id == target)).scalar()
    page.wait_for_function(
        "name => [...document.querySelectorAll('.c')].some(c =>"
        " c.querySelector('.n').textContent === name &&"
        " c.querySelector('.st').textContent === 'Major Outage')",
        arg=name,
        timeout=10_000,
    )
    seconds = time.perf_counter() - started
    assert page.evaluate("window.beaconMarker") == "no reload"
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
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.dataset.i") == "88"
    assert tip.is_visible()
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations(served: Any, browser: Any, scheme: str) -> None:
    base, _store, _ids = served
    page = browser.new_page(color_scheme=scheme, viewport={"width": 1100, "height": 900})
    page.goto(f"{base}/p/acme/")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{scheme}.png"), full_page=True)
    assert serious_violations(page) == []
    phone = browser.new_page(color_scheme=scheme, viewport={"width": 375, "height": 800})
    phone.goto(f"{base}/p/acme/history")
    phone.screenshot(path=str(ARTIFACTS / f"history-{scheme}-phone.png"), full_page=True)
    assert serious_violations(phone) == []
    page.close()
    phone.close()


def test_artifacts_dir_is_ignored_by_git() -> None:
    need(shutil.which("git") is not None, "git is not installed")
    out = subprocess.run(
        ["git", "check-ignore", "test-artifacts/page-light.png"], cwd=ROOT, capture_output=True
    )
    assert out.returncode == 0
