"""Flow 1 in a real browser: the layout and navigation (keyboard only), dark mode, and the
status pages list, which says that a public page nobody activated is not visible yet."""

from __future__ import annotations

from typing import Any

import pytest

from .browser import Steps, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_the_pages_list_is_reached_by_keyboard_and_warns_of_an_inactive_public_page(
    served: Any, browser: Any
) -> None:
    base = served.base
    steps = Steps("layout")
    page = browser.new_page()
    sign_in(page, base, "admin@example.test")
    steps.shot(page, "home")
    steps.axe(page, "home")

    # Keyboard only: the first Tab reaches the skip link, then the brand, the theme toggle,
    # sign out and the navigation, in that order.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Status pages":
            break
    else:
        raise AssertionError("the navigation is not reachable with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/admin/pages")
    assert page.locator("nav.main a[aria-current=page]").text_content() == "Status pages"

    rows = page.locator("tbody tr")
    assert rows.count() == 2
    shop = rows.filter(has_text="Shop Status")
    assert "Inactive" in shop.text_content()
    assert "Visitors cannot see this page until it is activated." in shop.text_content()
    acme = rows.filter(has_text="ACME Status")
    assert "Private" in acme.text_content() and "Active" in acme.text_content()
    assert "Visitors cannot see" not in acme.text_content()  # private: no such promise
    steps.shot(page, "pages list")
    steps.axe(page, "pages list")

    # Dark mode: the toggle overrides the system's choice and is remembered.
    toggle = page.locator("#theme")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert toggle.get_attribute("aria-pressed") == "true"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 19, 24)"
    steps.shot(page, "pages list dark")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    steps.axe(page, "pages list, dark toggle")
    page.close()
    steps.assert_accessible()


def test_a_stakeholder_sees_only_the_links_to_their_pages(served: Any, browser: Any) -> None:
    base = served.base
    steps = Steps("stakeholder")
    page = browser.new_page()
    sign_in(page, base, "viewer@example.test")
    assert page.locator("nav.main").count() == 0
    assert [a.text_content() for a in page.locator("main a").all()] == ["ACME Status"]
    steps.shot(page, "stakeholder home")
    steps.axe(page, "stakeholder home")
    assert page.goto(f"{base}/admin/pages").status == 404
    page.close()
    steps.assert_accessible()
