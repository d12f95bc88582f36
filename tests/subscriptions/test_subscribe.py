"""Subscribe, confirm and unsubscribe on public pages, for each channel, with validation."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import subscriber_links as links
from engine import subscribers as subs
from engine.runtime import Runtime
from engine.tables import deliveries
from pages.app import create_app
from tests.support import RecordingServer

from .conftest import (
    BASE_URL,
    drain,
    make_site,
    sent_json,
    settings_for,
    sms_sent,
    subscriber_rows,
)


def _confirm_path(text: str) -> str:
    match = re.search(re.escape(BASE_URL) + r"(/p/[^\s\"<]+/subscriptions/confirm/[\w-]+)", text)
    assert match, text
    return match.group(1)


def test_email_needs_confirmation_through_the_mailed_link(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    response = client.post(
        "/p/acme/subscribe", json={"channel": "email", "address": "Eve@Example.COM "}
    )
    assert response.status_code == 202
    assert response.json()["status"] == "pending_confirmation"
    (row,) = subscriber_rows(rt)
    assert row.address == "eve@example.com" and not row.confirmed

    drain(rt)
    (mail,) = sent_json(server)
    assert mail["personalizations"][0]["to"][0]["email"] == "eve@example.com"
    assert mail["subject"] == "Confirm your subscription to Acme Status"
    text = mail["content"][0]["value"]
    path = _confirm_path(text)

    page = client.get(path)
    # Mail scanners fetch links: the link shows a button, and only its POST confirms.
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert "Confirm subscription" in page.text
    assert not subscriber_rows(rt)[0].confirmed
    done = client.post(path)
    assert done.status_code == 200 and "Subscription confirmed" in done.text
    assert subscriber_rows(rt)[0].confirmed
    assert client.post(path).status_code == 200  # clicking twice is fine
    assert "Subscription confirmed" in client.get(path).text
    assert client.get("/p/acme/subscriptions/confirm/forged").status_code == 404
    assert client.post("/p/acme/subscriptions/confirm/forged").status_code == 404


def test_sms_needs_confirmation_by_text_message(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    response = client.post(
        "/p/acme/subscribe", data={"channel": "sms", "address": "+49 151 1234-5678"}
    )
    assert response.status_code == 202 and "Check your phone" in response.text
    drain(rt)
    (sms,) = sms_sent(server)
    assert sms["To"] == "+4915112345678" and sms["From"] == "+15550001111"
    client.get(_confirm_path(sms["Body"]))
    assert not subscriber_rows(rt)[0].confirmed
    client.post(_confirm_path(sms["Body"]))
    assert subscriber_rows(rt)[0].confirmed


def test_a_webhook_is_confirmed_at_once_with_a_secret_shown_once(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    url = f"{server.url}/hook"
    first = client.post(
        "/p/acme/subscribe", json={"channel": "webhook", "address": url, "services": ["api"]}
    )
    assert first.status_code == 201
    body = first.json()
    assert body["status"] == "subscribed" and body["services"] == ["api"]
    assert body["signing_secret"].startswith("whsec_")
    assert body["signature_scheme"] == "standard-webhooks"
    assert len(base64.b64decode(body["signing_secret"].removeprefix("whsec_"), validate=True)) == 32
    assert body["unsubscribe_url"].startswith(f"{BASE_URL}/p/acme/subscriptions/unsubscribe/")
    (row,) = subscriber_rows(rt)
    # Kept encrypted: the row holds a ciphertext that opens to the secret shown once.
    assert row.confirmed and body["signing_secret"] not in row.webhook_secret
    assert subs.webhook_secret(rt.store.keyring, row.webhook_secret) == body["signing_secret"]

    again = client.post("/p/acme/subscribe", json={"channel": "webhook", "address": url})
    assert again.status_code == 200
    assert "signing_secret" not in again.json() and "unsubscribe_url" not in again.json()
    assert len(subscriber_rows(rt)) == 1
    assert subscriber_rows(rt)[0].services == ["api"]  # nobody else can change the filter
    drain(rt)
    assert server.requests == []  # no confirmation for webhooks


def test_subscribing_again_adds_no_row_and_sends_no_second_confirmation(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    for _ in range(4):
        response = client.post(
            "/p/acme/subscribe", json={"channel": "email", "address": "eve@example.com"}
        )
        assert response.status_code == 202
    drain(rt)
    assert len(subscriber_rows(rt)) == 1
    assert len(sent_json(server)) == 1


def test_the_html_form_subscribes_and_answers_a_page(rt: Runtime, client: TestClient) -> None:
    make_site(rt)
    response = client.post(
        "/p/acme/subscribe",
        data={"channel": "email", "address": "eve@example.com", "services": "api,db"},
    )
    assert response.status_code == 202
    assert response.headers["content-type"].startswith("text/html")
    assert "eve@example.com" in response.text
    assert subscriber_rows(rt)[0].services == ["api", "db"]


def test_a_form_without_a_channel_means_email(rt: Runtime, client: TestClient) -> None:
    make_site(rt)
    client.post("/p/acme/subscribe", data={"address": "eve@example.com"})
    assert subscriber_rows(rt)[0].channel == "email"


def test_bad_input_gets_a_clear_4xx(rt: Runtime, client: TestClient) -> None:
    make_site(rt)
    cases = [
        ({"channel": "email", "address": "not-an-email"}, "address", "not an email address"),
        ({"channel": "sms", "address": "0151 123"}, "address", "E.164"),
        ({"channel": "webhook", "address": "ftp://x.test/"}, "address", "http(s)"),
        ({"channel": "webhook", "address": "https://u:p@x.test/"}, "address", "credentials"),
        ({"channel": "pigeon", "address": "x"}, "channel", "unknown channel"),
        (
            {"channel": "email", "address": "eve@example.com", "services": ["nope"]},
            "services",
            "nope",
        ),
        ({"channel": "email", "address": "a@b.co", "colour": "red"}, "colour", "unknown field"),
        ({"channel": "email", "address": 5}, "address", "must be a string"),
        ({"channel": "email", "address": "a@b.co", "services": "api"}, "services", "list"),
    ]
    for body, field, words in cases:
        response = client.post("/p/acme/subscribe", json=body)
        assert response.status_code == 422, body
        error = response.json()["error"]
        fields = error.get("fields") or []
        assert any(f["field"] == field and words in f["message"] for f in fields), error
    assert (
        client.post(
            "/p/acme/subscribe", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/p/acme/subscribe", content=b"x", headers={"content-type": "text/plain"}
        ).status_code
        == 415
    )
    html = client.post("/p/acme/subscribe", data={"channel": "sms", "address": "12"})
    assert html.status_code == 422 and "E.164" in html.text
    assert subscriber_rows(rt) == []


def test_unknown_and_inactive_pages_are_404(rt: Runtime, client: TestClient) -> None:
    make_site(rt, slug="draft", active=False)
    body = {"channel": "email", "address": "eve@example.com"}
    assert client.post("/p/nope/subscribe", json=body).status_code == 404
    assert client.post("/p/draft/subscribe", json=body).status_code == 404


def test_unsubscribe_shows_a_confirm_page_and_post_removes(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    created = client.post(
        "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/h"}
    ).json()
    path = created["unsubscribe_url"].removeprefix(BASE_URL)
    page = client.get(path)
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert len(subscriber_rows(rt)) == 1  # a GET (a link scanner) changes nothing
    done = client.post(path)
    assert done.status_code == 200 and "Unsubscribed" in done.text
    assert subscriber_rows(rt) == []
    assert client.get(path).status_code == 404
    assert client.post(path, headers={"accept": "application/json"}).status_code == 404


def test_a_token_of_another_page_does_not_work_here(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    make_site(rt, slug="other", team_key="other")
    created = client.post(
        "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/h"}
    ).json()
    token = created["unsubscribe_url"].rsplit("/", 1)[1]
    assert client.post(f"/p/other/subscriptions/unsubscribe/{token}").status_code == 404
    assert len(subscriber_rows(rt)) == 1


def test_a_subscriber_disabled_by_a_failure_can_subscribe_again(
    rt: Runtime, client: TestClient
) -> None:
    from engine import subscribers

    make_site(rt)
    client.post("/p/acme/subscribe", json={"channel": "email", "address": "eve@example.com"})
    with rt.store.begin() as conn:
        row = subscriber_rows(rt)[0]
        token = links.confirm_token(rt.store.keyring, row)
        assert token is not None
        subscribers.confirm(conn, row.page_id, token)
        subscribers.disable(conn, row.id, "SendGrid answered 400: bounced")
    client.post("/p/acme/subscribe", json={"channel": "email", "address": "eve@example.com"})
    (row,) = subscriber_rows(rt)
    assert row.disabled_reason is None and not row.confirmed
    # A new round: the first confirmation link ended with its selector.
    assert row.confirm_selector and links.confirm_token(rt.store.keyring, row) != token
    with rt.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one() == 0


def test_posting_a_disabled_webhook_again_hands_out_neither_secret_nor_link(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    from engine import subscribers

    make_site(rt)
    url = f"{server.url}/owner-hook"
    owner = client.post("/p/acme/subscribe", json={"channel": "webhook", "address": url}).json()
    (before,) = subscriber_rows(rt)
    with rt.store.begin() as conn:
        subscribers.disable(conn, before.id, "the receiver answered 410")
    again = client.post(
        "/p/acme/subscribe", json={"channel": "webhook", "address": url, "services": ["db"]}
    )
    assert again.status_code == 200
    assert again.json() == {
        "channel": "webhook",
        "address": url,
        "services": None,
        "status": "subscribed",
    }
    (after,) = subscriber_rows(rt)
    assert after.disabled_reason is None  # enabled again, sending resumes ...
    # ... to the owner, who still signs and unsubscribes with what they were given.
    assert after.webhook_secret == before.webhook_secret  # unchanged (and encrypted)
    assert subs.webhook_secret(rt.store.keyring, after.webhook_secret) == owner["signing_secret"]
    assert after.link_selector == before.link_selector
    assert owner["unsubscribe_url"].endswith(links.link_token(rt.store.keyring, after))
    assert after.services is None


def test_a_webhook_to_a_private_address_is_refused_unless_allowed(
    tmp_path: Path, server: RecordingServer, make_runtime: Callable[..., Runtime]
) -> None:
    settings = settings_for(tmp_path, server, BEACON_WEBHOOK_ALLOW_PRIVATE="false")
    runtime = make_runtime(settings)
    make_site(runtime)
    with TestClient(create_app(runtime)) as client:
        for url in (
            "http://127.0.0.1:9/h",
            "http://10.1.2.3/h",
            "http://[::1]/h",
            "http://localhost/h",
        ):
            response = client.post("/p/acme/subscribe", json={"channel": "webhook", "address": url})
            assert response.status_code == 422, url
            assert "private address" in response.json()["error"]["message"]


def test_one_client_address_cannot_subscribe_without_end(rt: Runtime, client: TestClient) -> None:
    make_site(rt)
    answers = [
        client.post(
            "/p/acme/subscribe", json={"channel": "email", "address": f"u{n}@example.com"}
        ).status_code
        for n in range(31)
    ]
    assert answers[:30] == [202] * 30 and answers[30] == 429
    form = client.post("/p/acme/subscribe", data={"address": "late@example.com"})
    assert form.status_code == 429 and "Too many" in form.text
    assert form.headers["retry-after"] == "600"


def test_links_use_the_pages_custom_domain_when_it_has_one(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    from engine.tables import status_pages, utcnow

    site = make_site(rt)
    with rt.store.begin() as conn:
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == site.page_id)
            .values(custom_domain="status.acme.test")
        )
    client.post("/p/acme/subscribe", json={"channel": "email", "address": "eve@example.com"})
    drain(rt)
    (mail,) = sent_json(server)
    # Not verified yet (its DNS may point elsewhere): links stay on Beacon's own address.
    assert f"{BASE_URL}/p/acme/subscriptions/confirm/" in mail["content"][0]["value"]
    with rt.store.begin() as conn:
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == site.page_id)
            .values(domain_verified_at=utcnow())
        )
    client.post("/p/acme/subscribe", json={"channel": "sms", "address": "+4915112345678"})
    drain(rt)
    (sms,) = sms_sent(server)
    assert "https://status.acme.test/subscriptions/confirm/" in sms["Body"]


def test_the_subscribe_form_offers_every_channel_and_the_pages_services(
    rt: Runtime, client: TestClient
) -> None:
    make_site(rt)
    form = client.get("/p/acme/subscribe?services=db")
    assert form.status_code == 200
    body = form.text
    for channel in ("email", "sms", "webhook"):
        assert f'name="channel" value="{channel}"' in body
    assert '<label for="address">' in body and '<form method="post">' in body
    assert 'value="api"> API service' in body
    assert 'value="db" checked> DB service' in body
    assert "<link" not in body and "<script" not in body
    retry = client.post("/p/acme/subscribe", data={"channel": "sms", "address": "x"})
    assert 'href="/p/acme/subscribe">Try again' in retry.text


def test_the_subscribe_form_of_a_private_page_is_for_members(
    rt: Runtime, client: TestClient
) -> None:
    from .conftest import make_user, sign_in

    make_site(rt, slug="acme", team_key="acme", private=True)
    make_site(rt, slug="draft", team_key="drafts", active=False)
    anonymous = client.get("/p/acme/subscribe", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=/p/acme/subscribe"
    assert client.get("/p/draft/subscribe").status_code == 404
    make_user(rt, "ana@acme.test", teams=("acme",))
    sign_in(client, "ana@acme.test")
    form = client.get("/p/acme/subscribe")
    assert form.status_code == 200
    assert "<strong>ana@acme.test</strong>" in form.text
    assert 'name="channel" value="user"' in form.text
    assert 'name="address"' not in form.text


def _confirmed_email(rt: Runtime, client: TestClient, server: RecordingServer) -> str:
    """Subscribe eve@example.com, confirm through the mailed link; the confirmed page's
    manage link (the path)."""
    client.post("/p/acme/subscribe", json={"channel": "email", "address": "eve@example.com"})
    drain(rt)
    (mail,) = sent_json(server)
    done = client.post(_confirm_path(mail["content"][0]["value"]))
    match = re.search(
        r'href="' + re.escape(BASE_URL) + r'(/p/acme/subscriptions/manage/[\w-]+)"', done.text
    )
    assert match, done.text
    return match.group(1)


def test_the_manage_page_changes_the_services_followed_without_sign_in(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    path = _confirmed_email(rt, client, server)
    page = client.get(path)
    assert page.status_code == 200 and "eve@example.com" in page.text
    assert 'value="api"> API service' in page.text and "<script" not in page.text
    assert subscriber_rows(rt)[0].services is None

    saved = client.post(path, data={"services": "db"})
    assert saved.status_code == 200 and "you follow DB service" in saved.text
    assert 'value="db" checked> DB service' in saved.text
    assert subscriber_rows(rt)[0].services == ["db"]
    # Nothing ticked: a browser sends an empty form.
    empty = {"content-type": "application/x-www-form-urlencoded"}
    everything = client.post(path, content=b"", headers=empty)
    assert "you follow every service" in everything.text
    assert subscriber_rows(rt)[0].services is None

    unknown = client.post(path, data={"services": "nope"})
    assert unknown.status_code == 422 and "unknown services for this page: nope" in unknown.text
    assert subscriber_rows(rt)[0].services is None
    assert client.post(path, json={"services": ["db"]}).status_code == 415
    assert client.get("/p/acme/subscriptions/manage/forged").status_code == 404
    assert client.post("/p/acme/subscriptions/manage/forged", data={"x": "1"}).status_code == 404

    gone = client.post(path, data={"unsubscribe": "1"})
    assert gone.status_code == 200 and "Unsubscribed" in gone.text
    assert subscriber_rows(rt) == []
    assert client.get(path).status_code == 404


def test_a_manage_token_of_another_page_does_not_work_here(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    make_site(rt, slug="other", team_key="other")
    path = _confirmed_email(rt, client, server)
    token = path.rsplit("/", 1)[1]
    assert client.get(f"/p/other/subscriptions/manage/{token}").status_code == 404
    other = client.post(f"/p/other/subscriptions/manage/{token}", data={"unsubscribe": "1"})
    assert other.status_code == 404
    assert subscriber_rows(rt)[0].services is None


def test_mail_clients_unsubscribe_with_one_click_post(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    make_site(rt)
    manage = _confirmed_email(rt, client, server)
    path = manage.replace("/manage/", "/unsubscribe/")
    shown = client.get(path)  # a link scanner: shows a button and a way to follow less
    assert shown.status_code == 200 and 'href="' + BASE_URL + manage + '"' in shown.text
    assert len(subscriber_rows(rt)) == 1
    # RFC 8058: the mail client POSTs this body to the List-Unsubscribe URL, no cookies.
    done = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    assert subscriber_rows(rt) == []
