"""Flow 3 in a real browser: an incident from a template (its placeholders filled in a
preview), "N subscribers on M pages will be notified" before sending, the incident on the
public page and at the subscriber's stand-in, an update, resolve, the timeline; then a
maintenance window scheduled, edited and cancelled."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support import RecordingServer, wait_for

from .browser import Steps, sign_in
from .conftest import Served

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def hooks() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


def test_an_incident_from_a_template_reaches_the_page_and_its_subscribers(
    served: Served, browser: Any, hooks: RecordingServer
) -> None:
    base, auth = served.base, served.auth
    pages = httpx.get(f"{base}/api/v1/pages", headers=auth).json()
    shop = next(p for p in pages if p["slug"] == "shop")
    httpx.patch(f"{base}/api/v1/pages/{shop['id']}", json={"active": True}, headers=auth)
    subscribed = httpx.post(
        f"{base}/p/shop/subscribe", json={"channel": "webhook", "address": hooks.url + "/hook"}
    )
    assert subscribed.status_code in (200, 201, 202), subscribed.text
    template = {
        "key": "api-errors",
        "team": "platform",
        "title": "API errors: {{ event.summary }}",
        "message": "We are investigating errors on {{ service.name }}.",
        "status": "investigating",
        "services": {"api": "major_outage"},
    }
    made = httpx.post(f"{base}/api/v1/incident-templates", json=template, headers=auth)
    assert made.status_code == 201, made.text

    steps = Steps("incidents")
    page = browser.new_page()
    sign_in(page, base, "ops@example.test")
    page.click("nav.main >> text=Incidents")
    page.click("text=Open an incident")
    steps.axe(page, "new incident")
    page.select_option("#template", label="api-errors (platform): API errors: {{ event.summary }}")
    page.fill("#summary", "5xx on checkout")
    page.click("text=Fill in from the template")
    assert page.locator("#preview-title").text_content() == "API errors: 5xx on checkout"
    expected = "We are investigating errors on Public API."
    assert page.locator("#preview-message").text_content() == expected
    assert page.input_value("#title") == "API errors: 5xx on checkout"
    assert page.locator("#reach").text_content() == "1 subscriber on 1 page will be notified."
    steps.shot(page, "incident from template preview")
    steps.axe(page, "new incident, filled from a template")
    page.click("button:has-text('Open incident')")
    page.wait_for_selector(".flash")
    assert page.locator("#incident-status").text_content() == "Investigating"
    steps.shot(page, "incident opened")
    steps.axe(page, "incident")

    def on_public_page() -> bool:
        return "API errors: 5xx on checkout" in httpx.get(f"{base}/p/shop/").text

    wait_for(on_public_page, 20, "the incident on the public page")

    def delivered() -> bool:
        bodies = [json.loads(r["body"]) for r in hooks.requests]  # type: ignore[arg-type]
        return any(
            b.get("incident", {}).get("name") == "API errors: 5xx on checkout" for b in bodies
        )

    wait_for(delivered, 30, "the incident at the subscriber's webhook")

    page.select_option("#status", "identified")
    page.fill("#message", "A bad deploy; rolling back.")
    page.click("button:has-text('Post update')")
    page.wait_for_selector(".flash")
    assert page.locator("#incident-status").text_content() == "Identified"
    page.fill("#message", "Errors are back to normal.")
    page.click("button:has-text('Resolve')")
    page.wait_for_selector(".flash")
    assert page.locator("#incident-status").text_content() == "Resolved"
    timeline = page.locator(".timeline li").all_text_contents()
    assert [t.split()[0] for t in timeline] == ["Resolved", "Identified", "Investigating"]
    steps.shot(page, "incident resolved with its timeline")
    page.close()
    steps.assert_accessible()


def test_a_maintenance_window_is_scheduled_edited_and_cancelled(
    served: Served, browser: Any
) -> None:
    base = served.base
    steps = Steps("maintenance")
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, base, "ops@example.test")
    page.click("nav.main >> text=Maintenance")
    page.click("text=Schedule maintenance")
    start = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    page.fill("#title", "Database upgrade")
    page.fill("#starts_at", start.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#ends_at", (start - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.check("label:has-text('Database') input")
    page.click("button:has-text('Schedule')")
    assert "ends_at must be after starts_at" in page.locator("#ends_at-error").text_content()
    steps.shot(page, "maintenance with an error")
    steps.axe(page, "maintenance form with an error")
    page.fill("#ends_at", (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    page.click("button:has-text('Schedule')")
    page.wait_for_selector(".flash")
    assert page.locator("#window-status").text_content() == "Scheduled"
    # shop (active since the first test) shows Public API, not Database: nobody follows it.
    assert page.locator("#reach").text_content() == "0 subscribers on 0 pages will be notified."
    page.fill("#title", "Database upgrade to 17")
    page.click("button:has-text('Save')")
    page.wait_for_selector(".flash")
    assert page.input_value("#title") == "Database upgrade to 17"
    steps.shot(page, "maintenance scheduled")
    steps.axe(page, "maintenance window")
    page.click("text=All maintenance")
    assert "Database upgrade to 17" in page.locator("main table").text_content()
    steps.axe(page, "maintenance list")
    page.click("text=Database upgrade to 17")
    page.click("button:has-text('Cancel maintenance')")
    page.wait_for_selector(".flash")
    assert "cancelled" in page.locator(".flash").text_content()
    assert page.locator("main table").count() == 0
    steps.shot(page, "maintenance cancelled")
    page.close()
    steps.assert_accessible()
