"""What subscribers receive (issue 15, item 9): an email in text and HTML with the page's
name and logo (an absolute URL to the page's own asset, nothing else from outside), each
person's own links and List-Unsubscribe headers; an SMS of one GSM-7 message with its link."""

from __future__ import annotations

import re

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import assets
from engine.runtime import Runtime
from engine.tables import status_pages
from tests.conftest import ROOT
from tests.gsm7_checker import gsm_septets
from tests.support import RecordingServer

from .conftest import BASE_URL, Site, drain, emails, make_site, open_incident, sent_json, sms_sent
from .test_notifications import subscribe


def _set_logo(rt: Runtime, site: Site, name: str) -> str:
    asset = assets.check(ROOT / "examples" / "assets" / name, role="logo")
    with rt.store.begin() as conn:
        asset_id = assets.store_asset(conn, asset)
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == site.page_id)
            .values(logo_asset_id=asset_id)
        )
    return asset.sha256


def test_an_email_is_text_and_html_with_the_pages_name_and_logo_and_nothing_external(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    site = make_site(rt)
    digest = _set_logo(rt, site, "logo.png")
    subscribe(rt, site, "email", "eve@example.com")
    open_incident(rt, site)
    drain(rt)
    (mail,) = [m for m in sent_json(server) if "personalizations" in m]
    # text/plain first, then text/html: SendGrid sends them as multipart/alternative.
    assert [c["type"] for c in mail["content"]] == ["text/plain", "text/html"]
    (email,) = emails(server)
    logo = f"{BASE_URL}/p/acme/assets/{digest}"
    assert f'<img src="{logo}"' in email.html and "Acme Status</span>" in email.html
    # The logo is the one thing fetched from outside, and it is the page's own asset.
    fetched = re.findall(r'(?:src|background)="([^"]+)"', email.html)
    assert fetched == [logo]
    assert "<link" not in email.html and "url(" not in email.html and "<script" not in email.html
    answer = client.get(logo.removeprefix(BASE_URL))
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert "<" not in email.text and "Acme Status" in email.text


def test_an_svg_logo_or_a_private_page_gives_the_name_alone(
    rt: Runtime, server: RecordingServer
) -> None:
    public = make_site(rt)
    _set_logo(rt, public, "logo.svg")  # Gmail and Outlook show no SVG
    private = make_site(rt, slug="inside", team_key="inside", private=True)
    _set_logo(rt, private, "logo.png")  # a mail client cannot sign in to fetch it
    subscribe(rt, public, "email", "eve@example.com")
    open_incident(rt, public)
    drain(rt)
    (email,) = emails(server)
    assert "<img" not in email.html and "Acme Status</span>" in email.html
    with rt.store.read() as conn:
        from workers.messages.notices import _logo_url, subs

        page = subs.page_by_id(conn, private.page_id)
        assert page is not None and _logo_url(conn, page, "http://x") is None


def test_each_recipient_of_a_batch_gets_their_own_links_and_list_unsubscribe(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    subscribe(rt, site, "email", "bob@example.com")
    open_incident(rt, site)
    drain(rt)
    assert len([m for m in sent_json(server) if "personalizations" in m]) == 1  # one request
    tokens = set()
    for email in emails(server):
        unsubscribe = email.headers["List-Unsubscribe"].strip("<>")
        assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        token = unsubscribe.rsplit("/", 1)[1]
        tokens.add(token)
        manage = f"{BASE_URL}/p/acme/subscriptions/manage/{token}"
        assert unsubscribe in email.text and f'href="{unsubscribe}"' in email.html
        assert manage in email.text and f'href="{manage}"' in email.html
    assert len(tokens) == 2


def test_an_sms_is_one_gsm7_message_with_the_incident_link(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "sms", "+4915112345678")
    incident_id = open_incident(
        rt, site, title="Database \u201cprimary\u201d degraded \u2014 failover in progress"
    )
    with rt.store.read() as conn:
        public_id = conn.execute(
            sa.text("select public_id from incidents where id = :id"), {"id": incident_id}
        ).scalar_one()
    drain(rt)
    (sms,) = sms_sent(server)
    body = sms["Body"]
    septets = gsm_septets(body)
    assert septets is not None and septets <= 160, body
    assert body.startswith('Acme Status: Database "primary" degraded - failover')
    assert body.endswith(f"{BASE_URL}/p/acme/incidents/{public_id}")
