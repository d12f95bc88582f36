"""Flow 5 in a real browser: a custom domain is entered, the CNAME record to create is
shown (TTL advice, Cloudflare-proxy warning), the live check finds it (a DNS server of the
test's own), verification, and the certificate's state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.pages_api.test_domains import DnsServer

from .browser import Steps, sign_in
from .conftest import Served, seeded_serve

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    """tests/pages_api/test_domains.py's zone: status.acme.test is a CNAME to
    acme.status.example.com; wrong.acme.test points elsewhere."""
    with DnsServer() as server:
        yield server


@pytest.fixture(scope="module")
def with_pages_domain(tmp_path_factory: pytest.TempPathFactory, dns: DnsServer) -> Iterator[Served]:
    env = {
        "BEACON_PAGES_DOMAIN": "status.example.com",
        "BEACON_DNS_SERVER": f"127.0.0.1:{dns.port}",
    }
    with seeded_serve(tmp_path_factory.mktemp("admin-ui-dns") / "data", env) as running:
        yield running


def test_a_custom_domain_shows_its_cname_is_checked_and_verified(
    with_pages_domain: Served, browser: Any
) -> None:
    base = with_pages_domain.base
    steps = Steps("custom-domain")
    page = browser.new_page()
    sign_in(page, base, "acme-ops@example.test")
    page.click("nav.main >> text=Status pages")
    page.click("text=ACME Status")
    page.click("text=Custom domain")
    steps.axe(page, "custom domain, none yet")

    page.fill("#custom_domain", "acme.status.example.com")
    page.click("button:has-text('Save domain')")
    assert "under the pages domain" in page.locator("#custom_domain-error").text_content()
    steps.shot(page, "a pages-domain host is refused")

    page.fill("#custom_domain", "wrong.acme.test")
    page.click("button:has-text('Save domain')")
    page.wait_for_selector(".flash")
    record = page.locator("#dns-record tbody td").all_text_contents()
    assert record == ["wrong.acme.test", "CNAME", "acme.status.example.com", "300"]
    assert "300 seconds" in page.locator(".note").first.text_content()
    assert "DNS only" in page.locator("#cloudflare").text_content()
    check = page.locator("#domain-check").text_content()
    assert "points at elsewhere.example.net, not at acme.status.example.com" in check
    assert "not verified" in check
    steps.shot(page, "cname points elsewhere")
    steps.axe(page, "custom domain, wrong CNAME")

    page.fill("#custom_domain", "status.acme.test")
    page.click("button:has-text('Save domain')")
    page.wait_for_selector(".flash")
    assert "CNAME found" in page.locator("#domain-check").text_content()
    page.click("button:has-text('Check DNS now')")
    page.wait_for_selector(".flash")
    assert "Verified" in page.locator(".flash").text_content()
    check = page.locator("#domain-check").text_content()
    assert "verified the page is served on it" in " ".join(check.split())
    assert "Ready:" in page.locator("#certificate").text_content()
    steps.shot(page, "domain verified")
    steps.axe(page, "custom domain, verified")
    # The live check is refreshed in place by htmx (its fragment on its own).
    fragment = page.request.get(page.url + "/check")
    assert fragment.status == 200 and "CNAME found" in fragment.text()
    page.close()
    steps.assert_accessible()
