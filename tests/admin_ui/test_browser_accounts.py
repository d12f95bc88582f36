"""Flow 8 in a real browser: an admin creates a team, invites a user (who follows the
emailed link, chooses a password and is signed in), signs a user out everywhere, makes an
API key (shown once, working, then revoked) and reads the audit log, filtered. A responder
has keys of their own teams only, and neither Teams and users nor the audit log."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import wait_for

from .browser import Steps, sign_in
from .conftest import PASSWORD, Served, seeded_serve

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def accounts_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with seeded_serve(tmp_path_factory.mktemp("admin-ui-accounts") / "data") as running:
        yield running


def invitation_link(outbox: Path, to: str) -> str | None:
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if to in str(message["To"]):
            body = message.get_body(preferencelist=("plain",))
            found = re.search(r"https?://\S+/account/\S+", body.get_content() if body else "")
            if found:
                return found.group(0)
    return None


def test_teams_users_keys_and_the_audit_log(accounts_served: Served, browser: Any) -> None:
    base = accounts_served.base
    assert accounts_served.data is not None
    steps = Steps("accounts")
    # ops@ has a session elsewhere, which "Sign out everywhere" ends.
    elsewhere = browser.new_page()
    sign_in(elsewhere, base, "ops@example.test")

    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, base, "admin@example.test")
    page.click("nav.main >> text=Teams and users")
    steps.axe(page, "teams and users")
    page.fill("#team-key", "billing")
    page.fill("#team-name", "Billing")
    page.check("input[name=private]")
    page.click("button:has-text('Create team')")
    page.wait_for_selector(".flash")
    assert "Private" in page.locator("tr", has_text="billing").text_content()

    page.fill("#email", "new@example.test")
    page.check("input[name=role][value=responder]")
    page.check("#invite-h ~ form input[name=teams][value=platform]")
    page.click("button:has-text('Send invitation')")
    page.wait_for_selector(".flash")
    assert "Invitation sent to new@example.test." in page.locator(".flash").text_content()
    row = page.locator("#users tr", has_text="new@example.test")
    assert "responder" in row.text_content() and "platform" in row.text_content()
    steps.shot(page, "invitation sent")

    outbox = accounts_served.data / "outbox"
    wait_for(lambda: invitation_link(outbox, "new@example.test"), 20, "the invitation email")
    link = invitation_link(outbox, "new@example.test")
    assert link is not None
    invited = browser.new_page()
    invited.goto(link.replace("http://127.0.0.1:8000", base))
    invited.fill("input[type=password] >> nth=0", PASSWORD)
    if invited.locator("input[type=password]").count() > 1:
        invited.fill("input[type=password] >> nth=1", PASSWORD)
    invited.click("button[type=submit]")
    invited.goto(f"{base}/admin/pages")
    assert invited.locator("h1").text_content() == "Status pages"
    invited.close()

    page.click("#users a:text-is('ops@example.test')")
    steps.axe(page, "user")
    page.click("main button:has-text('Sign out everywhere')")
    page.wait_for_selector(".flash")
    assert "1 session ended." in page.locator(".flash").text_content()
    elsewhere.goto(f"{base}/admin/pages")
    assert elsewhere.url.startswith(f"{base}/login")
    elsewhere.close()

    page.click("nav.main >> text=API keys")
    page.fill("#key-name", "deploy bot")
    page.select_option("#key-team", "platform")
    page.click("button:has-text('Create key')")
    key = page.locator("#new-key").text_content()
    assert "shown once" in page.locator(".secret").text_content()
    steps.shot(page, "api key shown once")
    steps.axe(page, "api keys")
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{base}/api/v1/services", headers=auth).status_code == 200
    page.goto(f"{base}/admin/keys")
    assert key not in page.content()
    page.locator("#keys tr", has_text="deploy bot").locator("button").click()
    page.wait_for_selector(".flash")
    assert httpx.get(f"{base}/api/v1/services", headers=auth).status_code == 401

    page.click("nav.main >> text=Audit log")
    page.select_option("#kind", "api key")
    with page.expect_navigation():  # read the filtered log, not the page before it
        page.click("button:has-text('Filter')")
    actions = [
        (cells[1], cells[2])
        for cells in (
            r.locator("td").all_text_contents() for r in page.locator("#audit tbody tr").all()
        )
    ]
    assert actions[:2] == [
        ("user:admin@example.test", "delete"),
        ("user:admin@example.test", "create"),
    ], actions
    steps.shot(page, "audit log filtered")
    steps.axe(page, "audit log")
    page.close()

    responder = browser.new_page()
    sign_in(responder, base, "acme-ops@example.test")
    assert responder.locator("nav.main >> text=Teams and users").count() == 0
    assert responder.goto(f"{base}/admin/teams").status == 404
    responder.goto(f"{base}/admin/keys")
    assert "deploy bot" not in responder.content()  # platform's key
    # engine.authz: the audit log is the installation's, an admin's to read.
    assert responder.locator("nav.main >> text=Audit log").count() == 0
    assert responder.goto(f"{base}/admin/audit").status == 404
    steps.axe(responder, "api keys, responder")
    responder.close()
    steps.assert_accessible()
