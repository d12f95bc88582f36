"""Flow 6 in a real browser: a page's Subscribers tab shows the notification options its
type allows, refuses a bad CSV naming the row and column (nothing imported), imports a
good one with and without confirmation messages, adds a webhook (its secret shown once)
and an account user, searches, exports and removes; a private page offers account users
only; and the incident form says who will hear, per channel, before sending. axe-core
checks each state in light and dark mode."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx
import pytest

from .browser import Steps, sign_in
from .conftest import Served

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def _csv(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def _submit(page: Any, button: str) -> None:
    """Click a form's button and wait for the page it answers with."""
    with page.expect_navigation():
        page.click(f"button:has-text('{button}')")


def _rows(page: Any) -> list[str]:
    return [
        r.strip() for r in page.locator("#subscribers tbody tr td:first-child").all_text_contents()
    ]


def test_a_page_s_subscribers_are_imported_added_searched_exported_and_removed(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    base, auth = served.base, served.auth
    pages = httpx.get(f"{base}/api/v1/pages", headers=auth).json()
    shop = next(p for p in pages if p["slug"] == "shop")
    httpx.patch(f"{base}/api/v1/pages/{shop['id']}", json={"active": True}, headers=auth)

    steps = Steps("subscribers")
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Remove this subscriber?"
    sign_in(page, base, "ops@example.test")
    page.click("nav.main >> text=Status pages")
    page.click("text=Shop Status")
    page.click("text=Subscribers")
    # The click navigates; reading the list before the tab arrived read the old page's none.
    page.locator("#options li").first.wait_for()
    options = page.locator("#options li").all_text_contents()
    assert [o.split()[0] for o in options] == ["Email", "SMS", "Webhook", "Account"]
    # Embedded mode keeps email in the outbox; Twilio is not set: SMS is not offered.
    assert "unavailable" in options[1] and "Twilio is not set" in options[1]
    assert page.locator("#add-channel option").all_text_contents() == [
        "Email",
        "Webhook",
        "Account users",
    ]
    steps.shot(page, "the tab, no subscribers")
    steps.axe(page, "subscribers, none")

    bad = "address,services\nann@example.com,api\nnot-an-address,\nbob@example.com,nope\n"
    page.set_input_files("#import-file", _csv(tmp_path, "bad.csv", bad))
    _submit(page, "Import")
    errors = page.locator("#import-errors").text_content() or ""
    assert "Nothing was imported." in errors
    assert "row 3, column address: 'not-an-address' is not an email address" in errors
    assert "row 4, column services: not services of this page: nope" in errors
    assert page.locator("#count").text_content() == "0 subscribers."
    steps.shot(page, "a bad file is refused with its rows and columns")
    steps.axe(page, "subscribers, import refused")

    good = "address,services\nann@example.com,api\ncarl@example.com,\n"
    page.set_input_files("#import-file", _csv(tmp_path, "good.csv", good))
    _submit(page, "Import")
    flash = page.locator(".flash").text_content() or ""
    assert "Imported 2 subscribers (2 confirmations on their way)" in flash
    assert page.locator("#subscribers").get_by_text("waiting for confirmation").count() == 2
    moved = "address\ndora@example.com\n"
    page.set_input_files("#import-file", _csv(tmp_path, "moved.csv", moved))
    page.check("#import-form-skip")
    _submit(page, "Import")
    assert "confirmation skipped" in (page.locator(".flash").text_content() or "")
    dora = page.locator("#subscribers tr", has_text="dora@example.com").text_content() or ""
    assert "confirmed" in dora and "by user:ops@example.test, confirmation skipped" in dora
    steps.shot(page, "imported with and without confirmation")

    page.select_option("#add-channel", "webhook")
    page.fill("#add-address", "https://hooks.example.com/very-secret-path")
    _submit(page, "Add subscriber")
    secret = page.locator("#signing-secret").text_content() or ""
    assert secret.startswith("whsec_")
    assert "very-secret-path" not in page.content()
    steps.shot(page, "a webhook's secret, shown once")
    steps.axe(page, "subscribers, webhook secret")
    page.reload()
    assert page.locator("#signing-secret").count() == 0 and secret not in page.content()

    page.select_option("#add-channel", "user")
    page.fill("#add-user", "admin@example.test")
    _submit(page, "Add subscriber")
    assert "Added admin@example.test (confirmed)." in (page.locator(".flash").text_content() or "")
    assert page.locator("#count").text_content() == "5 subscribers."

    page.fill("#q", "ANN")
    _submit(page, "Search")
    assert _rows(page) == ["ann@example.com"]
    page.fill("#q", "")
    page.select_option("#state", "pending")
    _submit(page, "Search")
    assert sorted(_rows(page)) == ["ann@example.com", "carl@example.com"]
    steps.shot(page, "searched by state")
    steps.axe(page, "subscribers, searched")
    page.select_option("#state", "")
    _submit(page, "Search")

    with page.expect_download() as download:
        page.click("text=Export CSV")
    exported = Path(download.value.path()).read_text()
    lines = list(csv.reader(io.StringIO(exported)))
    assert lines[0][:4] == ["channel", "address", "services", "state"]
    assert {line[1] for line in lines[1:]} == {
        "ann@example.com",
        "carl@example.com",
        "dora@example.com",
        "https://hooks.example.com/…",
        "admin@example.test",
    }

    page.locator("#subscribers tr", has_text="carl@example.com").locator("button").click()
    assert "Removed carl@example.com." in (page.locator(".flash").text_content() or "")
    assert "carl@example.com" not in _rows(page)
    steps.shot(page, "removed one")

    # Before sending: who will hear, per channel, on which pages.
    page.click("nav.main >> text=Incidents")
    page.click("text=Open an incident")
    page.select_option("#team", "platform")
    page.fill("#title", "API errors")
    page.select_option(f"#impact-{served.world.service_ids['api']}", "major_outage")
    _submit(page, "Preview")
    # Confirmed and following api: dora (every service), the webhook, the account user.
    assert page.locator("#reach").text_content() == "3 subscribers on 1 page will be notified."
    reach = page.locator("#reach-channels").text_content()
    assert reach == "1 by email, 1 by webhook, 1 as account users; Shop Status: 3."
    steps.shot(page, "who will hear before sending")
    steps.axe(page, "new incident, who will hear")
    steps.assert_accessible()


def test_a_private_page_offers_account_users_only(served: Served, browser: Any) -> None:
    steps = Steps("subscribers-private")
    page = browser.new_page()
    sign_in(page, served.base, "acme-ops@example.test")
    page.click("nav.main >> text=Status pages")
    page.click("text=ACME Status")
    page.click("text=Subscribers")
    # The click navigates; reading the list before the tab arrived read the old page's none.
    page.locator("#options li").first.wait_for()
    options = page.locator("#options li").all_text_contents()
    assert len(options) == 1 and options[0].startswith("Account users")
    assert page.locator("#import-file").count() == 0 and page.locator("#add-address").count() == 0
    page.fill("#add-user", "ops@example.test")  # not a member of acme
    _submit(page, "Add subscriber")
    assert "not a member of the page's teams" in (page.locator(".ferr").first.text_content() or "")
    steps.axe(page, "private page subscribers, refused")
    page.fill("#add-user", "acme-ops@example.test")
    _submit(page, "Add subscriber")
    assert "Added acme-ops@example.test (confirmed)." in (
        page.locator(".flash").text_content() or ""
    )
    steps.shot(page, "a member added")
    steps.axe(page, "private page subscribers")
    steps.assert_accessible()


def _mail_to(folder: Path, address: str, timeout: float = 30) -> str:
    """The text of the first .eml in the outbox addressed to `address` (embedded mode
    without a provider keeps email there)."""
    import email
    import email.policy
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for eml in sorted(folder.glob("*.eml")) if folder.is_dir() else []:
            mail = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            if mail["To"] == address:
                body = mail.get_body(preferencelist=("plain",))
                assert body is not None
                return str(body.get_content())
        time.sleep(0.2)
    raise AssertionError(f"no mail to {address} in {folder}")


def test_a_subscriber_confirms_with_a_button_and_manages_what_they_follow(
    served: Served, browser: Any
) -> None:
    import re

    base, auth = served.base, served.auth
    pages = httpx.get(f"{base}/api/v1/pages", headers=auth).json()
    shop = next(p for p in pages if p["slug"] == "shop")
    httpx.patch(f"{base}/api/v1/pages/{shop['id']}", json={"active": True}, headers=auth)
    steps = Steps("subscriber-links")
    page = browser.new_page()
    page.goto(f"{base}/p/shop/subscribe")
    page.fill("#address", "erin@example.com")
    _submit(page, "Subscribe")
    assert served.data is not None
    text = _mail_to(served.data / "outbox", "erin@example.com")
    link = re.search(r"https?://\S+(/p/shop/subscriptions/confirm/[\w-]+)", text)
    assert link, text

    page.goto(base + link.group(1))  # what a mail scanner fetches: nothing is confirmed
    assert page.locator("h1").text_content() == "Confirm your subscription"
    state = httpx.get(
        f"{base}/api/v1/pages/{shop['id']}/subscribers", params={"q": "erin"}, headers=auth
    ).json()["subscribers"][0]["state"]
    assert state == "pending"
    steps.shot(page, "the confirmation link shows a button")
    steps.axe(page, "confirm")
    _submit(page, "Confirm subscription")
    assert page.locator("h1").text_content() == "Subscription confirmed"
    steps.axe(page, "confirmed")

    page.click("text=Manage your subscription")
    assert page.locator("h1").text_content() == "Your subscription"
    steps.axe(page, "manage")
    page.check("input[name=services][value=api]")
    _submit(page, "Save")
    assert "you follow Public API" in (page.locator("[role=status]").text_content() or "")
    found = httpx.get(
        f"{base}/api/v1/pages/{shop['id']}/subscribers", params={"q": "erin"}, headers=auth
    ).json()["subscribers"][0]
    assert found["state"] == "confirmed" and found["services"] == ["api"]
    steps.shot(page, "following one service")
    _submit(page, "Unsubscribe from Shop Status")
    assert page.locator("h1").text_content() == "Unsubscribed"
    steps.axe(page, "unsubscribed")
    gone = httpx.get(
        f"{base}/api/v1/pages/{shop['id']}/subscribers", params={"q": "erin"}, headers=auth
    ).json()
    assert gone["total"] == 0
    steps.assert_accessible()
