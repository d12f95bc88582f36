"""Flow 4 in a real browser, on the example configuration: a rule's claim makes a service
partially down; its page says why in words, the claim is released; then the status is set
by hand with an expiry and an incident, and cleared."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.support import wait_for

from .browser import Steps, sign_in
from .conftest import Served

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def service_status(served: Served, key: str) -> str:
    found = httpx.get(f"{served.base}/api/v1/services", headers=served.auth).json()
    return str(next(s for s in found if s["key"] == key)["status"])


def test_a_services_status_is_explained_released_and_set_by_hand(
    example: Served, browser: Any
) -> None:
    base = example.base
    body = json.loads((FIXTURES / "alert_sources" / "uptime-kuma" / "down_v1_23.json").read_text())
    # examples/rules/uptime.yaml: a monitor tagged service:<key> marks that service down.
    body["monitor"]["name"] = "Sign-in check"
    body["monitor"]["tags"] = [{"name": "service", "value": "auth", "color": "#000"}]
    answer = httpx.post(f"{base}/api/v1/events/example-uptime-kuma-key-change-me", json=body)
    assert answer.status_code == 202, answer.text
    wait_for(lambda: service_status(example, "auth") == "partial_outage", 20, "the rule's claim")

    steps = Steps("services")
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, base, "ops@example.test")
    page.click("nav.main >> text=Services")
    row = page.locator("tbody tr", has_text="Sign-in")
    assert "Partial outage" in row.text_content()
    steps.axe(page, "services")
    row.locator("a").click()
    because = page.locator("#because").text_content()
    assert because == (
        "Because partial_outage: the worst of rule tagged-monitor-down claims partial_outage."
    )
    assert "uptime-kuma/" in page.locator("#claims").text_content()
    # The rules that can act on it, with their sources (examples/rules/uptime.yaml).
    tagged = page.locator("#service-rules tr", has_text="tagged-monitor-down").text_content()
    assert "source uptime-kuma" in tagged and "sets partial_outage" in tagged
    assert "when labels.tag.service is auth" in tagged
    steps.shot(page, "why is it partially down")
    steps.axe(page, "service with a claim")
    page.click("button:has-text('Release claim')")
    page.wait_for_selector(".flash")
    assert "Claim released." in page.locator(".flash").text_content()
    assert page.locator("#claims").count() == 0
    assert "operational" in page.locator("#because").text_content()
    assert service_status(example, "auth") == "operational"
    steps.shot(page, "claim released")

    later = datetime.now(UTC) + timedelta(hours=2)
    until = later.strftime("%Y-%m-%dT%H:%M")
    page.select_option("#status", "degraded")
    page.fill("#until", until)
    page.fill("#reason", "Slow logins after the IdP change")
    page.check("input[name=incident]")
    page.fill("#title", "Slow sign-in")
    page.fill("#message", "Signing in takes longer than usual.")
    page.click("button:has-text('Set status')")
    page.wait_for_url(f"{base}/admin/incidents/*")
    assert "incident opened" in page.locator(".flash").text_content()
    assert "Sign-in (degraded)" in page.locator("dl.kv").text_content()
    assert service_status(example, "auth") == "degraded"
    steps.shot(page, "status set with an incident")

    page.goto(f"{base}/admin/services")
    page.locator("tbody tr", has_text="Sign-in").locator("a").click()
    assert "a manual override sets degraded" in page.locator("#because").text_content()
    shown = later.strftime("%Y-%m-%d %H:%M UTC")
    assert f"until {shown}: Slow logins" in page.locator("#why-h + p + p + p").text_content()
    steps.axe(page, "service set by hand")
    page.click("button:has-text('Clear: follow the rules again')")
    page.wait_for_selector(".flash")
    assert "follows its rules again" in page.locator(".flash").text_content()
    steps.shot(page, "override cleared")
    page.close()
    steps.assert_accessible()


def test_a_status_in_the_past_is_refused_inline(example: Served, browser: Any) -> None:
    page = browser.new_page()
    sign_in(page, example.base, "ops@example.test")
    page.goto(f"{example.base}/admin/services")
    page.locator("tbody tr", has_text="Database").locator("a").click()
    page.select_option("#status", "major_outage")
    page.fill("#until", "2020-01-01T00:00")
    page.click("button:has-text('Set status')")
    assert "until must be in the future" in page.locator("#until-error").text_content()
    assert service_status(example, "db") == "operational"
    page.close()
