"""Tried as an attacker: a subscriber's links (confirm, manage, unsubscribe) through the real
routes. Their token is the only credential, so it must not reach a log or a cache."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from engine.db import Store
from engine.runtime import Runtime
from pages.app import create_app
from tests.support import RecordingServer

from .conftest import BASE_URL, make_site, open_incident, settings_for


def test_subscriber_tokens_stay_out_of_the_access_log(
    rt: Runtime, client: TestClient, server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    make_site(rt)
    created = client.post(
        "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/h"}
    ).json()
    token = created["unsubscribe_url"].rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO, logger="beacon.access"):
        for path in (
            created["unsubscribe_url"].removeprefix(BASE_URL),
            f"/p/acme/subscriptions/manage/{token}",
            f"/p/acme/subscriptions/confirm/{token}",
            f"/p/acme//subscriptions/Manage/{token}/",
        ):
            client.get(path)
    lines = [r.getMessage() for r in caplog.records if r.name == "beacon.access"]
    assert len(lines) == 4
    assert all(token not in line for line in lines), lines
    assert any("/subscriptions/manage/<redacted>" in line for line in lines), lines


def test_search_cannot_spell_out_the_hidden_part_of_a_webhook_url(
    rt: Runtime, client: TestClient
) -> None:
    """Managers see a webhook by host only (its path is the receiver's secret); a search
    that matched the whole URL answered yes/no for any guess, so the path could be spelt
    out a character at a time. The host still finds it."""
    from datetime import UTC, datetime

    from engine.tables import deliveries

    from .test_managing import _add, _admin

    site = make_site(rt)
    hook = _add(rt, site, "webhook", "https://Hooks.Example.com:8443/T0/B1/xoxsecret?k=v")
    _add(rt, site, "email", "ann@example.com")
    now = datetime.now(UTC)
    with rt.store.begin() as conn:
        conn.execute(
            deliveries.insert().values(
                dedup_key=f"incident-update:1:page:{site.page_id}:subscriber:{hook}",
                subscriber_id=hook,
                kind="subscriber",
                message={"notice": "incident-update:1", "channel": "webhook", "source": None},
                status="failed",
                attempts=1,
                created_at=now,
                updated_at=now,
            )
        )
    admin = _admin(rt)
    page = f"/api/v1/pages/{site.page_id}"

    def found(path: str, q: str) -> int:
        answer = client.get(f"{page}/{path}", params={"q": q}, headers=admin)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["total"])

    for path in ("subscribers", "deliveries"):
        for guess in ("xoxsecret", "/T0/", "B1", "k=v", "?", "8443", "com:"):
            assert found(path, guess) == 0, (path, guess)
        for shown in ("hooks.example", "HOOKS.EXAMPLE.COM", "https://hooks"):
            assert found(path, shown) == 1, (path, shown)
    assert found("subscribers", "ann@") == 1


def test_webhook_search_by_host_only_on_both_stores(store: Store) -> None:
    from types import SimpleNamespace

    import sqlalchemy as sa

    from engine import delivery_log, subscriber_admin, vault
    from engine import subscribers as subs
    from engine.security import new_token
    from engine.tables import subscribers

    site = make_site(SimpleNamespace(store=store))  # type: ignore[arg-type]
    with store.begin() as conn:
        assert subs.page_by_id(conn, site.page_id) is not None
        conn.execute(
            subscribers.insert(),
            [
                {
                    "page_id": site.page_id,
                    "channel": "webhook",
                    # As the store keeps a webhook: the URL sealed, found by its digest.
                    **subs.webhook_columns(
                        vault.of(conn), site.page_id, f"https://h{n}.example.net/path{n}/secret"
                    ),
                    "confirmed": True,
                    "link_selector": new_token(16),
                }
                for n in range(300)
            ],
        )
    with store.read() as conn:

        def count(q: str) -> int:
            return subscriber_admin.search(
                conn, site.page_id, subscriber_admin.Search(q=q), limit=500
            ).total

        assert count("secret") == 0 and count("path1") == 0
        assert count("example.net") == 300 and count("h12.example") == 1
        rows, total, _ = delivery_log.entries(
            conn, site.page_id, delivery_log.DeliveryFilter(q="secret")
        )
        assert total == 0 and rows == []
        assert conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar() == 300


def test_a_nul_character_anywhere_is_a_4xx_on_postgresql(
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
    pg_url: str,
) -> None:
    """PostgreSQL cannot hold a NUL in text, and its driver refuses one before the query
    runs: a NUL in a slug, a link's token, an address or a search was a 500 (SQLite takes
    it, so only PostgreSQL installations saw it)."""
    from .test_managing import _admin

    rt = make_runtime(settings_for(tmp_path, server, BEACON_DATABASE_URL=pg_url))
    site = make_site(rt)
    admin = _admin(rt)
    tried = []
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        for path in (
            "/p/a%00b/",
            "/p/a%00b/history.rss",
            "/p/a%00b/subscribe",
            "/p/acme/subscriptions/manage/bf_%00",
            "/p/acme/subscriptions/unsubscribe/x%00",
            "/p/acme/subscriptions/confirm/x%00",
            "/p/acme/feeds/bf_%00/history.rss",
        ):
            for method in ("GET", "POST"):
                answer = client.request(method, path, data={"unsubscribe": "1"})
                tried.append((method, path, answer.status_code))
        answer = client.post(
            "/p/acme/subscribe", json={"channel": "email", "address": "a\x00b@example.com"}
        )
        tried.append(("POST", "subscribe json", answer.status_code))
        for what in ("subscribers", "deliveries"):
            answer = client.get(
                f"/api/v1/pages/{site.page_id}/{what}", params={"q": "a\x00"}, headers=admin
            )
            tried.append(("GET", what, answer.status_code))
    assert all(400 <= status < 500 for _, _, status in tried), tried


def test_a_receiver_echoing_its_url_does_not_show_managers_the_hidden_path(
    tmp_path: Path, server: RecordingServer, make_runtime: Callable[..., Runtime]
) -> None:
    """A webhook's path is kept from managers, but a receiver's error body often echoes it
    (Express: "Cannot POST /path"), and the delivery log quoted that body as the reason.
    The failure is recorded without the URL's hidden parts, wherever it is shown."""

    from .conftest import drain
    from .test_managing import _add, _admin

    rt = make_runtime(
        settings_for(
            tmp_path, server, BEACON_NOTIFY_WINDOW="0", BEACON_WEBHOOK_ALLOW_PRIVATE="true"
        )
    )
    site = make_site(rt)
    hidden = "/hooks/T0ABCDEF/xoxsecret42?token=qq77zz"
    _add(rt, site, "webhook", f"{server.url}{hidden}")
    for _ in range(3):
        server.answer(404, {"error": f"Cannot POST {hidden}", "url": f"{server.url}{hidden}"})
    open_incident(rt, site, message="Looking.")
    drain(rt)
    with TestClient(create_app(rt)) as client:
        log = client.get(f"/api/v1/pages/{site.page_id}/deliveries", headers=_admin(rt)).json()
        listed = client.get(f"/api/v1/pages/{site.page_id}/subscribers", headers=_admin(rt))
    reasons = [d["reason"] for d in log["deliveries"] if d["reason"]]
    assert reasons and all("404" in r for r in reasons), log
    for text in (*reasons, listed.text):
        for secret in ("T0ABCDEF", "xoxsecret42", "qq77zz"):
            assert secret not in text, text


def test_an_address_with_a_control_character_is_refused(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    """`ann@example.com` followed by \\x01, \\x02, ... were each a new subscriber of their
    own: a confirmation each, past the per-address limit on confirmations to one mailbox,
    and rows no provider can send to (a NUL that PostgreSQL cannot even store)."""
    from .conftest import subscriber_rows
    from .test_managing import _admin

    site = make_site(rt)
    for bad in ("ann@example.com\x00", "ann@exa\x01mple.com", "ann@example.com\x7f"):
        answer = client.post("/p/acme/subscribe", json={"channel": "email", "address": bad})
        assert answer.status_code == 422, (bad, answer.text)
    hook = f"{server.url}/h\x02"
    answer = client.post("/p/acme/subscribe", json={"channel": "webhook", "address": hook})
    assert answer.status_code == 422, answer.text
    added = client.post(
        f"/api/v1/pages/{site.page_id}/subscribers",
        json={"channel": "email", "address": "bob@example.com\x03", "skip_confirmation": True},
        headers=_admin(rt),
    )
    assert added.status_code == 422, added.text
    assert subscriber_rows(rt) == []


def test_a_private_pages_manage_link_stops_showing_the_page_to_a_member_who_left(
    rt: Runtime, client: TestClient
) -> None:
    """The manage link in a member's old messages lists the private page's services and
    let them choose; once they left its teams it is a non-member's view of a private page
    (the fan-out already sends them nothing). Unsubscribing still works."""
    from engine import subscribers as subs

    from .conftest import leave_team, make_user, subscriber_rows

    site = make_site(rt, private=True)
    user_id = make_user(rt, "mia@example.com", teams=("platform",))
    with rt.store.begin() as conn:
        page = subs.page_by_id(conn, site.page_id)
        assert page is not None
        found = subs.subscribe(conn, page, "user", "mia@example.com", user_id=user_id)
    path = f"/p/acme/subscriptions/manage/{found.unsubscribe_token}"
    shown = client.get(path)
    assert shown.status_code == 200 and "DB service" in shown.text
    leave_team(rt, user_id)
    for answer in (client.get(path), client.post(path, data={"services": ["db"]})):
        assert answer.status_code == 404, answer.text
        assert "DB service" not in answer.text and "Acme" not in answer.text
    assert subscriber_rows(rt)[0].services is None
    gone = client.post(f"/p/acme/subscriptions/unsubscribe/{found.unsubscribe_token}")
    assert gone.status_code == 200 and subscriber_rows(rt) == []
