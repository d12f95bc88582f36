"""Your account in a real browser: a stakeholder reaches it from their name in the header,
makes a feed link for their private page (its addresses shown once, readable by a feed
reader without a cookie), and revokes it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .browser import Steps, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_a_stakeholder_makes_and_revokes_a_feed_link(served: Any, browser: Any) -> None:
    base = served.base
    steps = Steps("account")
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, base, "viewer@example.test")
    page.get_by_role("link", name="viewer@example.test").click()
    page.wait_for_url(f"{base}/admin/account")
    steps.axe(page, "account, no link yet")
    page.get_by_label("Page").select_option(label="ACME Status")
    page.get_by_role("button", name="Make link").click()
    rss = page.locator("#link-rss").text_content() or ""
    assert rss.startswith(f"{base}/p/acme/feeds/bf_") and rss.endswith("/history.rss")
    steps.shot(page, "feed link shown once")
    steps.axe(page, "account, link made")
    reader = httpx.get(rss, timeout=10)  # a feed reader: no cookie
    assert reader.status_code == 200 and "<rss" in reader.text
    assert httpx.get(f"{base}/p/acme/history.rss", timeout=10).status_code == 401

    page.goto(f"{base}/admin/account")
    assert rss not in page.content()  # shown once
    page.get_by_role("button", name="Revoke").click()
    page.wait_for_url(f"{base}/admin/account")
    assert "No feed link yet" in page.content()
    assert httpx.get(rss, timeout=10).status_code == 404
    page.close()
    steps.assert_accessible()
