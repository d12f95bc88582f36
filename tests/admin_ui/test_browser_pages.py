"""Flow 2 in a real browser, as a new user would: create a status page with two existing
services and one created from the picker, upload a logo, Save; Visit shows the preview
banner to a member and 404 to an anonymous visitor; Activate makes it public, and the type
can no longer change (the form says so)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ROOT
from tests.support import wait_for

from .browser import Steps, sign_in
from .conftest import Served

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LOGO = ROOT / "examples" / "assets" / "logo.png"


def test_a_new_page_is_created_previewed_and_activated(served: Served, browser: Any) -> None:
    base = served.base
    steps = Steps("create-page")
    page = browser.new_page()
    sign_in(page, base, "ops@example.test")
    page.click("text=Create status page")
    page.wait_for_url(f"{base}/admin/pages/new")
    steps.axe(page, "create page form")

    page.fill("#name", "Platform Status")
    page.fill("#slug", "platform")
    # The slug is shown with the addresses it gives (htmx, as it is typed).
    page.wait_for_function(
        "() => document.getElementById('slug-forms').textContent.includes('/p/platform/')"
    )
    assert page.locator("input[name=type][value=public]").is_checked()
    assert page.locator("input[name=teams][value=platform]").is_checked()
    # A responder of platform is offered platform's services only, never private acme's.
    offered = page.locator("#picker-rows tr").all_text_contents()
    assert any("Public API" in row for row in offered)
    assert not any("ACME" in row for row in offered)
    page.check("tr:has-text('Database') input[type=checkbox]")
    page.check("tr:has-text('Public API') input[type=checkbox]")
    page.fill("tr:has-text('Database') input[type=number]", "1")
    page.fill("tr:has-text('Public API') input[type=number]", "2")
    page.fill("#new_service_name", "Payments")
    page.fill("#new_service_group", "Core")
    page.set_input_files("#logo", str(LOGO))
    steps.shot(page, "create page filled in")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"{base}/admin/pages/*")
    assert "Status page Platform Status saved." in page.locator(".flash").text_content()
    assert "visitors cannot see it until it is activated" in page.locator(".warn").text_content()
    steps.shot(page, "page saved")
    steps.axe(page, "page settings, inactive")

    picked = page.locator("#picker-rows input[name=services]:checked")
    assert picked.count() == 3
    summary = httpx.get(f"{base}/api/v1/pages", headers=served.auth).json()
    created = next(p for p in summary if p["slug"] == "platform")
    assert created["has_logo"] is True and created["active"] is False
    names = [
        httpx.get(f"{base}/api/v1/services/{sid}", headers=served.auth).json()["name"]
        for sid in created["services"]
    ]
    assert names == ["Database", "Public API", "Payments"]

    # Visit: the member sees the preview banner, an anonymous visitor a 404.
    page.click("text=Visit status page")
    page.wait_for_url(f"{base}/p/platform/")
    assert "Preview" in page.locator(".preview").text_content()

    # The preview is the page's rendered document: the render that adds the logo can land a
    # moment after the page was saved, so the member reloads until it has (then it must show).
    def logo_shown() -> bool:
        if page.evaluate("document.querySelector('.brand img')?.naturalWidth ?? 0") > 0:
            return True
        page.reload()
        return False

    wait_for(logo_shown, 10, "the logo in the preview")
    steps.shot(page, "preview as member")
    assert httpx.get(f"{base}/p/platform/").status_code == 404
    anonymous = browser.new_page()
    assert anonymous.goto(f"{base}/p/platform/").status == 404
    steps.shot(anonymous, "preview as anonymous")

    page.go_back()
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Activate')")
    page.wait_for_selector(".flash")
    assert "is active" in page.locator(".flash").text_content()
    assert page.locator("input[name=type][value=public]").is_disabled()
    assert "The type cannot change after activation." in page.locator("#type-fixed").text_content()
    assert page.locator(".warn").count() == 0
    steps.shot(page, "page activated")
    steps.axe(page, "page settings, active")

    answer = anonymous.goto(f"{base}/p/platform/")
    assert answer.status == 200
    assert anonymous.locator(".preview").count() == 0
    names = ["Database", "Public API", "Payments"]
    assert anonymous.locator(".c .nm").all_text_contents() == names
    steps.shot(anonymous, "public page")
    page.close()
    anonymous.close()
    steps.assert_accessible()
