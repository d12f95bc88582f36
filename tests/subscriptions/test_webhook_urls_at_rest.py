"""Webhook subscribers' URLs are sealed at rest: their path and query are the receiver's
secret. The store keeps the URL encrypted, a keyed lookup digest (so the same URL on the
same page is still one subscriber) and the scheme and host managers see. The webhook still
arrives, signed; an old store migrates (and back); `beacon db reseal` moves them to a new
key. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from standardwebhooks import Webhook
from starlette.testclient import TestClient

from engine import migrate, vault
from engine import subscribers as subs
from engine.accounts import create_api_key
from engine.db import Store, create_store
from engine.reseal import reseal
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import UTCDateTime, subscribers
from tests.support import RecordingServer

from .conftest import drain, make_site, open_incident, settings_for, table_dump

OLD_KEY, NEW_KEY = "o" * 48, "n" * 48
#: What of the URL is the receiver's secret: none of it may be at rest, nor shown.
SECRETS = ("T0SECRETPATH", "B0abc123", "q-s3cret-xyz789")
PATH = "/hook/T0SECRETPATH/B0abc123?token=q-s3cret-xyz789"


def _hooks(server: RecordingServer) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["path"] == PATH]


def _verified(request: dict[str, Any], secret: str) -> dict[str, Any]:
    """The body of a webhook request, checked as a receiver checks it (standardwebhooks)."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    payload = Webhook(secret).verify(request["body"], headers)
    assert isinstance(payload, dict)
    return payload


def _incidents(server: RecordingServer, secret: str) -> list[str]:
    """The incidents the receiver heard of, each request's signature checked."""
    bodies = [_verified(hook, secret) for hook in _hooks(server)]
    return [b["incident"]["name"] for b in bodies if "incident" in b]


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_the_store_holds_no_webhook_url_and_the_webhook_still_arrives_signed(
    rt_db: Runtime, client_db: TestClient, server: RecordingServer
) -> None:
    rt, client = rt_db, client_db
    site = make_site(rt)
    url = server.url + PATH
    made = client.post("/p/acme/subscribe", json={"channel": "webhook", "address": url})
    assert made.status_code == 201, made.text
    secret = made.json()["signing_secret"]
    # The same URL again is the same subscriber (and learns nothing: no secret, no link).
    again = client.post("/p/acme/subscribe", json={"channel": "webhook", "address": url})
    assert again.status_code == 200 and "signing_secret" not in again.json()
    # The receiver's first answer echoes the URL it was called at, as many do.
    server.answers.append((404, f'{{"error": "Cannot POST {PATH}"}}'.encode(), {}))
    open_incident(rt, site, title="First")
    drain(rt)
    open_incident(rt, site, key="db", title="Second")
    drain(rt)

    # One subscriber: one request per incident (and per component change, which webhooks
    # hear too), each signed with its secret.
    bodies = [_verified(hook, secret) for hook in _hooks(server)]
    names = [b["incident"]["name"] for b in bodies if "incident" in b]
    assert names == ["First", "Second"]
    assert {b["meta"]["unsubscribe"] for b in bodies} == {made.json()["unsubscribe_url"]}

    dump = table_dump(rt.store)
    assert _leaks(dump) == []
    assert "/hook/" not in dump
    with rt.store.read() as conn:
        (row,) = conn.execute(sa.select(subscribers)).all()
        assert row.address.startswith(vault.of(conn).current_id + ":")
        assert row.webhook_host == "http://127.0.0.1" and row.webhook_url.startswith(vault.SEALED)
        assert subs.webhook_url(vault.of(conn), row) == url

    # Managers see the scheme and host, in the list, the search, the export and the log.
    admin = {"Authorization": f"Bearer {create_api_key(rt.store, name='root', admin=True)}"}
    base = f"/api/v1/pages/{site.page_id}"
    shown = "http://127.0.0.1/…"
    listed = client.get(f"{base}/subscribers", headers=admin).json()["subscribers"]
    assert [s["address"] for s in listed] == [shown]
    for q, found in (("127.0.0.1", 1), ("http://127", 1), ("T0SECRET", 0), ("hook", 0)):
        answer = client.get(f"{base}/subscribers", params={"q": q}, headers=admin).json()
        assert answer["total"] == found, q
    # The digest that is the row's address is never searched either.
    digest_part = row.address.split(":")[1][:6]
    assert (
        client.get(f"{base}/subscribers", params={"q": digest_part}, headers=admin).json()["total"]
        == 0
    )
    exported = client.get(f"{base}/subscribers.csv", headers=admin)
    assert exported.status_code == 200 and _leaks(exported.text) == []
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["address"] for r in rows] == [shown]
    log = client.get(f"{base}/deliveries", headers=admin)
    assert log.status_code == 200 and _leaks(log.text) == []
    entries = log.json()["deliveries"]
    assert {e["address"] for e in entries} == {shown}
    assert any("Cannot POST" in (e["reason"] or "") for e in entries)
    assert (
        client.get(f"{base}/deliveries", params={"q": "T0SECRET"}, headers=admin).json()["total"]
        == 0
    )
    # The subscriber's own pages (from the link in each body) name it by host too.
    manage = client.get(made.json()["unsubscribe_url"].replace("/unsubscribe/", "/manage/"))
    assert manage.status_code == 200 and _leaks(manage.text) == [] and shown in manage.text


def test_the_same_url_is_one_subscriber_per_page_and_pages_do_not_share_a_digest(
    rt_db: Runtime,
) -> None:
    rt = rt_db
    acme, beta = make_site(rt), make_site(rt, slug="beta", team_key="other")
    url = "https://hooks.example.com" + PATH
    with rt.store.begin() as conn:
        first = subs.subscribe(conn, subs.page_by_id(conn, acme.page_id), "webhook", url)
        again = subs.subscribe(conn, subs.page_by_id(conn, acme.page_id), "webhook", url)
        # One character more is another URL, another subscriber.
        other = subs.subscribe(conn, subs.page_by_id(conn, acme.page_id), "webhook", url + "x")
        there = subs.subscribe(conn, subs.page_by_id(conn, beta.page_id), "webhook", url)
    assert first.created and not again.created and other.created and there.created
    assert again.subscriber_id == first.subscriber_id
    with rt.store.read() as conn:
        digests = dict(conn.execute(sa.select(subscribers.c.id, subscribers.c.address)).all())
    # A copy of the database does not tell that two pages' webhooks are one receiver.
    assert digests[first.subscriber_id] != digests[there.subscriber_id]


def test_a_webhook_url_is_never_echoed_in_a_refusal(client_db: TestClient, rt_db: Runtime) -> None:
    make_site(rt_db)
    for bad in (
        "https://hooks.example.com:99999" + PATH,
        "ftp://hooks.example.com" + PATH,
        "https://user:pw@hooks.example.com" + PATH,
    ):
        answer = client_db.post("/p/acme/subscribe", json={"channel": "webhook", "address": bad})
        assert answer.status_code == 422, bad
        assert _leaks(answer.text) == [], answer.text


# --- an old store, and a new secret key --------------------------------------------------------


_OLD_SUBSCRIBERS = sa.table(
    "subscribers",
    *(sa.column(c) for c in ("id", "page_id", "channel", "address", "confirmed", "link_selector")),
    sa.column("webhook_secret", sa.Text),
    sa.column("created_at", UTCDateTime),
)


def _store(tmp_path: Path, db_env: dict[str, str], *keys: str) -> Store:
    env = {
        "BEACON_DATA_DIR": str(tmp_path / "data"),
        "BEACON_SECRET_KEY": keys[0],
        "BEACON_PREVIOUS_SECRET_KEYS": " ".join(keys[1:]),
        **db_env,
    }
    return create_store(Settings.from_env(env))


def _runtime(
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
    store: Store,
    db_env: dict[str, str],
    *keys: str,
) -> Runtime:
    extra = {"BEACON_SECRET_KEY": keys[0], "BEACON_PREVIOUS_SECRET_KEYS": " ".join(keys[1:])}
    settings = settings_for(tmp_path, server, BEACON_NOTIFY_WINDOW="0", **extra, **db_env)
    return make_runtime(settings, store=store)


def test_an_old_store_seals_its_webhook_urls_and_still_delivers_and_downgrades(
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
    db_env: dict[str, str],
) -> None:
    store = _store(tmp_path, db_env, OLD_KEY)
    try:
        migrate.upgrade(store, "0022_subscriber_link_tokens")
        rt = _runtime(tmp_path, server, make_runtime, store, db_env, OLD_KEY)
        site = make_site(rt)
        url = server.url + PATH
        secret = subs.new_webhook_secret()
        with store.begin() as conn:  # as the release before wrote a webhook subscriber
            conn.execute(
                _OLD_SUBSCRIBERS.insert().values(
                    id=1,
                    page_id=site.page_id,
                    channel="webhook",
                    address=url,
                    confirmed=True,
                    link_selector="s" * 22,
                    webhook_secret=vault.of(conn).seal(secret, subs.WEBHOOK_SECRET),
                    created_at=datetime(2026, 11, 1, tzinfo=UTC),
                )
            )
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT setval('subscribers_id_seq', 1)"))
        migrate.upgrade(store)
        assert _leaks(table_dump(store)) == []
        with store.begin() as conn:  # subscribing it again still finds it
            found = subs.subscribe(conn, subs.page_by_id(conn, site.page_id), "webhook", url)
        assert not found.created and found.subscriber_id == 1
        open_incident(rt, site)
        drain(rt)
        assert _incidents(server, secret) == ["API errors"]

        # The downgrade writes the URL back as the release before keeps it.
        migrate.downgrade(store, "0022_subscriber_link_tokens")
        with store.read() as conn:
            back = conn.execute(sa.select(_OLD_SUBSCRIBERS)).one()
            assert "webhook_url" not in sa.inspect(conn).get_columns("subscribers").__repr__()
        assert back.address == url
        migrate.upgrade(store)
        assert _leaks(table_dump(store)) == []
    finally:
        store.dispose()


def test_reseal_moves_webhook_urls_and_their_digests_to_the_new_key(
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
    db_env: dict[str, str],
) -> None:
    url = server.url + PATH
    old = _store(tmp_path, db_env, OLD_KEY)
    try:
        migrate.upgrade(old)
        site = make_site(_runtime(tmp_path, server, make_runtime, old, db_env, OLD_KEY))
        with old.begin() as conn:
            made = subs.subscribe(conn, subs.page_by_id(conn, site.page_id), "webhook", url)
    finally:
        old.dispose()
    assert made.webhook_secret is not None

    both = _store(tmp_path, db_env, NEW_KEY, OLD_KEY)
    try:
        with both.begin() as conn:
            # Before the reseal, the row under the old key is still this URL's subscriber.
            again = subs.subscribe(conn, subs.page_by_id(conn, site.page_id), "webhook", url)
            assert not again.created and again.subscriber_id == made.subscriber_id
            done = reseal(conn)
        assert done.sealed == 2  # the URL (with its digest) and the signing secret
        with both.begin() as conn:
            assert reseal(conn).sealed == 0
    finally:
        both.dispose()

    new = _store(tmp_path, db_env, NEW_KEY)  # the old key is gone
    try:
        ring = new.keyring
        assert ring is not None
        with new.read() as conn:
            row = conn.execute(sa.select(subscribers)).one()
        assert row.address.startswith(ring.current_id + ":")
        assert ring.is_sealed_current(row.webhook_url) and _leaks(table_dump(new)) == []
        with new.begin() as conn:
            again = subs.subscribe(conn, subs.page_by_id(conn, site.page_id), "webhook", url)
        assert not again.created and again.subscriber_id == made.subscriber_id
        rt = _runtime(tmp_path, server, make_runtime, new, db_env, NEW_KEY)
        open_incident(rt, site)
        drain(rt)
        assert _incidents(server, made.webhook_secret) == ["API errors"]
    finally:
        new.dispose()


def test_another_team_cannot_search_a_pages_webhooks(rt_db: Runtime, client_db: TestClient) -> None:
    rt, client = rt_db, client_db
    site = make_site(rt)
    make_site(rt, slug="beta", team_key="other")
    with rt.store.begin() as conn:
        subs.subscribe(
            conn, subs.page_by_id(conn, site.page_id), "webhook", "https://hooks.example.com" + PATH
        )
    key = create_api_key(rt.store, name="other", team="other")
    for q in ("hooks.example.com", "T0SECRET", ""):
        answer = client.get(
            f"/api/v1/pages/{site.page_id}/subscribers",
            params={"q": q},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code in (403, 404), answer.text
        assert "hooks.example.com" not in answer.text and _leaks(answer.text) == []
