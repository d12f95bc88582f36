"""Flow 6 in a real browser, on the example configuration: an alert source is created from
the type picker (with the tool's setup notes), its webhook URL is shown once, a test event
and a real delivery show their outcomes (and why no rule matched), the key is rotated."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.support import wait_for

from .browser import Steps, sign_in
from .conftest import Served

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_an_alert_source_is_created_tested_and_rotated(example: Served, browser: Any) -> None:
    base = example.base
    steps = Steps("alert-sources")
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, base, "ops@example.test")
    page.click("nav.main >> text=Alert sources")
    assert "Uptime Kuma" in page.locator("main table").text_content()
    assert "example-uptime-kuma-key-change-me" not in page.content()  # masked
    steps.axe(page, "alert sources")
    page.click("text=Add alert source")
    page.select_option("#type", "uptime-kuma")
    # htmx swaps in the tool's setup notes from docs/alert-sources.md.
    page.wait_for_selector("#notes h2")
    assert page.locator("#notes h2").text_content() == "Setting up Uptime Kuma"
    assert "heartbeat.status" in page.locator("#notes").text_content()
    steps.shot(page, "type picker with setup notes")
    steps.axe(page, "add alert source")
    page.fill("#name", "Staging Kuma")
    page.fill("#key", "staging-kuma")
    page.click("button:has-text('Create alert source')")
    url = page.locator("#webhook-url").text_content()
    assert url.startswith(f"{base}/api/v1/events/")
    assert "shown once" in page.locator(".secret").text_content()
    steps.shot(page, "webhook url shown once")
    steps.axe(page, "alert source created")
    page.click("text=Done")
    assert url not in page.content()

    page.click("button:has-text('Send a test event')")
    page.wait_for_selector(".flash")
    first = page.locator("#events tbody tr").first
    assert "Test event for alert source staging-kuma" in first.text_content()
    assert "test" in first.locator(".outcome").text_content()

    body = json.loads((FIXTURES / "alert_sources" / "uptime-kuma" / "down_v1_23.json").read_text())
    assert httpx.post(url, json=body).status_code == 202

    def evaluated() -> bool:
        page.reload()
        outcome = page.locator("#events tbody tr").first.locator(".outcome").text_content()
        return outcome not in ("pending", "test")

    wait_for(evaluated, 20, "the delivery's outcome", poll=0.5)
    latest = page.locator("#events tbody tr").first
    assert latest.locator(".outcome").text_content() == "no match"
    latest.locator("summary").click()
    # examples/rules name the source `uptime-kuma`, not this one: the answer says so.
    why = latest.locator("details").text_content()
    assert "No rule is for this source: the 5 in force name others." in why
    steps.shot(page, "recent events with outcomes")
    steps.axe(page, "alert source with events")

    page.click("button:has-text('Rotate key')")
    new_url = page.locator("#webhook-url").text_content()
    assert new_url != url and new_url.startswith(f"{base}/api/v1/events/")
    assert "keeps working until" in page.locator(".secret").text_content()
    assert httpx.post(new_url, json=body).status_code == 202
    assert httpx.post(url, json=body).status_code == 202  # the grace period
    steps.shot(page, "key rotated")
    page.close()
    steps.assert_accessible()
