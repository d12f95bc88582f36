"""Subscribers' own links (confirm, manage, unsubscribe) hold no token at rest: the store
keeps a selector, the verifier is derived from the secret key whenever a message is
composed. Links sent before (random tokens in plain text) keep working after migration
0022, a guessed or another page's token gets the answer an unknown one gets, and a
change of secret key keeps old links while the previous key is listed. On SQLite and
PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import migrate, vault
from engine import subscriber_links as links
from engine import subscribers as subs
from engine.db import Store, create_store
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import UTCDateTime, deliveries, outbox, subscribers
from pages.app import create_app
from tests import factories
from tests.support import RecordingServer

from .conftest import (
    BASE_URL,
    drain,
    emails,
    make_site,
    open_incident,
    settings_for,
    subscriber_rows,
    table_dump,
)

OLD_KEY, NEW_KEY = "o" * 48, "n" * 48
AT = datetime(2026, 11, 1, tzinfo=UTC)


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_the_store_holds_no_token_of_any_link_it_sends(
    rt_db: Runtime, client_db: TestClient, server: RecordingServer
) -> None:
    rt, client = rt_db, client_db
    site = make_site(rt)
    made = client.post("/p/acme/subscribe", json={"channel": "email", "address": "eve@a.test"})
    assert made.status_code == 202, made.text
    hook = client.post(
        "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/hook/1"}
    ).json()
    drain(rt)
    (confirmation,) = emails(server)
    confirm_url = next(w for w in confirmation.text.split() if "/subscriptions/confirm/" in w)
    assert client.post(confirm_url.removeprefix(BASE_URL)).status_code == 200
    open_incident(rt, site)
    drain(rt)
    mail = [m for m in emails(server) if m.subject.endswith("API errors")][0]
    unsubscribe_url = mail.headers["List-Unsubscribe"].strip("<>")
    manage_url = unsubscribe_url.replace("/unsubscribe/", "/manage/")
    assert f"Change what you follow: {manage_url}" in mail.text
    hook_meta = [
        b["meta"]["unsubscribe"] for b in _json_bodies(server) if "meta" in b and b.get("incident")
    ]
    assert hook_meta == [hook["unsubscribe_url"]]

    tokens = [_token(u) for u in (confirm_url, unsubscribe_url, hook["unsubscribe_url"])]
    dump = table_dump(rt.store)
    for token in tokens:
        assert len(token) == links.SELECTOR_CHARS + links.VERIFIER_CHARS
        assert token not in dump
        # The verifier, the secret half, is nowhere; the selector (a prefix) is the row's.
        assert token[links.SELECTOR_CHARS :] not in dump
    for path in (manage_url, unsubscribe_url, hook["unsubscribe_url"]):
        assert client.get(path.removeprefix(BASE_URL)).status_code == 200
    # The same links every time: composing again makes the same token.
    again = client.post(
        "/p/acme/subscribe", json={"channel": "webhook", "address": f"{server.url}/hook/2"}
    ).json()
    with rt.store.read() as conn:
        # The newest webhook (its URL is sealed: no query finds it by the URL).
        row = conn.execute(
            sa.select(subscribers)
            .where(subscribers.c.channel == "webhook")
            .order_by(subscribers.c.id.desc())
            .limit(1)
        ).one()
        assert subs.webhook_url(vault.of(conn), row) == f"{server.url}/hook/2"
        assert links.link_token(vault.of(conn), row) == _token(again["unsubscribe_url"])


def _json_bodies(server: RecordingServer) -> list[dict[str, Any]]:
    from .conftest import sent_json

    return [b for b in sent_json(server) if "personalizations" not in b]


# --- a guessed token, another page's token: the answer an unknown one gets ---------------------


ROUTES = [
    ("GET", "confirm"),
    ("POST", "confirm"),
    ("GET", "manage"),
    ("POST", "manage"),
    ("GET", "unsubscribe"),
    ("POST", "unsubscribe"),
]


def test_a_guessed_or_another_pages_token_gets_the_answer_of_an_unknown_one(
    rt_db: Runtime, client_db: TestClient
) -> None:
    rt, client = rt_db, client_db
    acme = make_site(rt)
    beta = make_site(rt, slug="beta", team_key="beta")
    with rt.store.begin() as conn:
        pages = {s.slug: subs.page_by_id(conn, s.page_id) for s in (acme, beta)}
        mine = subs.subscribe(conn, pages["acme"], "email", "ann@a.test")  # type: ignore[arg-type]
        theirs = subs.subscribe(conn, pages["beta"], "email", "bob@b.test")  # type: ignore[arg-type]
    assert mine.confirm_token and theirs.confirm_token
    own = {"confirm": mine.confirm_token, "manage": mine.unsubscribe_token}
    own["unsubscribe"] = mine.unsubscribe_token
    other = {"confirm": theirs.confirm_token, "manage": theirs.unsubscribe_token}
    other["unsubscribe"] = theirs.unsubscribe_token

    def flip(token: str, at: int) -> str:
        return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]

    def answer(method: str, route: str, token: str) -> tuple[int, str]:
        path = f"/p/acme/subscriptions/{route}/{token}"
        got = client.request(
            method,
            path,
            headers={"content-type": "application/x-www-form-urlencoded"},
            content=b"services=db" if route == "manage" else b"",
        )
        return got.status_code, got.text.replace(token, "<token>")

    for method, route in ROUTES:
        unknown = answer(method, route, secrets.token_urlsafe(40)[:54])
        assert unknown[0] == 404, (method, route, unknown)
        mine_token = own[route]
        tries = {
            "another page's token": other[route],
            "a legacy-length guess": secrets.token_urlsafe(24),
            "the verifier changed": flip(mine_token, len(mine_token) - 1),
            "the selector changed": flip(mine_token, 0),
            "another page's verifier": mine_token[: links.SELECTOR_CHARS]
            + other[route][links.SELECTOR_CHARS :],
            # A link of one purpose does not open the other: same selector column never.
            "the other purpose's token": own["manage" if route == "confirm" else "confirm"],
            "cut short": mine_token[:-1],
            "made longer": mine_token + "A",
            "outside the alphabet": mine_token[:-1] + "~",
            "not ASCII": mine_token[:-1] + "\u00e9",
            "very long": mine_token * 100,
        }
        for what, token in tries.items():
            assert answer(method, route, token) == unknown, (method, route, what)
    # Nothing changed for either subscriber.
    rows = {r.address: r for r in subscriber_rows(rt)}
    assert set(rows) == {"ann@a.test", "bob@b.test"}
    assert not rows["ann@a.test"].confirmed and not rows["bob@b.test"].confirmed
    assert rows["ann@a.test"].services is None and rows["bob@b.test"].services is None
    # ... and the right tokens still work on their own page.
    assert client.post(f"/p/beta/subscriptions/confirm/{other['confirm']}").status_code == 200
    assert client.get(f"/p/acme/subscriptions/manage/{own['manage']}").status_code == 200


# --- links sent before: migration 0022 keeps them working --------------------------------------


_OLD_SUBSCRIBERS = sa.table(
    "subscribers",
    *(
        sa.column(c)
        for c in (
            "id",
            "page_id",
            "channel",
            "address",
            "confirmed",
            "confirm_token",
            "unsubscribe_token",
        )
    ),
    sa.column("created_at", UTCDateTime),
)


@pytest.fixture
def old_store(tmp_path: Path, db_env: dict[str, str]) -> Iterator[Store]:
    """A store at 0021 (subscribers' tokens in plain text)."""
    env = {"BEACON_DATA_DIR": str(tmp_path / "data"), "BEACON_SECRET_KEY": OLD_KEY, **db_env}
    store = create_store(Settings.from_env(env))
    migrate.upgrade(store, "0021_delivery_threads")
    yield store
    store.dispose()


def _old_rows(store: Store) -> dict[str, str]:
    """Two subscribers as the old release wrote them, and the tokens of their links."""
    tokens = {name: secrets.token_urlsafe(24) for name in ("ann-link", "ann-confirm", "bob-link")}
    with store.begin() as conn:
        team = factories.team(conn, "platform")
        page = factories.page(conn, team, "acme")
        conn.execute(
            _OLD_SUBSCRIBERS.insert(),
            [
                {
                    "id": 1,
                    "page_id": page,
                    "channel": "email",
                    "address": "ann@a.test",
                    "confirmed": False,
                    "confirm_token": tokens["ann-confirm"],
                    "unsubscribe_token": tokens["ann-link"],
                    "created_at": AT,
                },
                {
                    "id": 2,
                    "page_id": page,
                    "channel": "webhook",
                    "address": "https://hooks.b.test/x",
                    "confirmed": True,
                    "confirm_token": None,
                    "unsubscribe_token": tokens["bob-link"],
                    "created_at": AT,
                },
            ],
        )
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT setval('subscribers_id_seq', 2)"))
    return tokens


def test_links_sent_before_the_migration_keep_working(
    old_store: Store,
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
    db_env: dict[str, str],
) -> None:
    tokens = _old_rows(old_store)
    migrate.upgrade(old_store)
    dump = table_dump(old_store)
    assert not [t for t in tokens.values() if t in dump]

    settings = settings_for(tmp_path, server, BEACON_SECRET_KEY=OLD_KEY, **db_env)
    rt = make_runtime(settings, store=old_store)
    with TestClient(create_app(rt)) as client:
        page = "/p/acme/subscriptions"
        shown = client.get(f"{page}/confirm/{tokens['ann-confirm']}")
        assert shown.status_code == 200 and "ann@a.test" in shown.text
        assert client.post(f"{page}/confirm/{tokens['ann-confirm']}").status_code == 200
        assert client.get(f"{page}/manage/{tokens['ann-link']}").status_code == 200
        saved = client.post(
            f"{page}/manage/{tokens['ann-link']}",
            data={"services": []},
        )
        assert saved.status_code == 200, saved.text
        assert client.get(f"{page}/unsubscribe/{tokens['bob-link']}").status_code == 200
        # New messages carry derived links, which work beside the old ones.
        with old_store.read() as conn:
            ann = conn.execute(sa.select(subscribers).where(subscribers.c.id == 1)).one()
            new_link = links.link_token(vault.of(conn), ann)
        assert new_link != tokens["ann-link"]
        assert client.get(f"{page}/manage/{new_link}").status_code == 200
        # RFC 8058 one-click, as a mail client posts it, with the link of an old message.
        gone = client.post(
            f"{page}/unsubscribe/{tokens['bob-link']}",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert gone.status_code == 200
        assert client.get(f"{page}/unsubscribe/{tokens['bob-link']}").status_code == 404
    with old_store.read() as conn:
        left = conn.execute(sa.select(subscribers)).all()
    assert [(r.address, bool(r.confirmed)) for r in left] == [("ann@a.test", True)]

    # The downgrade writes the derived tokens back, so links sent since keep working there.
    migrate.downgrade(old_store, "0021_delivery_threads")
    with old_store.read() as conn:
        back = conn.execute(sa.select(_OLD_SUBSCRIBERS)).one()
    assert back.unsubscribe_token == new_link
    migrate.upgrade(old_store)


def test_a_new_secret_key_keeps_old_links_while_the_previous_one_is_listed(
    tmp_path: Path, db_env: dict[str, str]
) -> None:
    def store_with(*keys: str) -> Store:
        env = {
            "BEACON_DATA_DIR": str(tmp_path / "data"),
            "BEACON_SECRET_KEY": keys[0],
            "BEACON_PREVIOUS_SECRET_KEYS": " ".join(keys[1:]),
            **db_env,
        }
        return create_store(Settings.from_env(env))

    first = store_with(OLD_KEY)
    migrate.upgrade(first)
    with first.begin() as conn:
        team = factories.team(conn, "platform")
        page = subs.page_by_id(conn, factories.page(conn, team, "acme"))
        assert page is not None
        made = subs.subscribe(conn, page, "email", "ann@a.test")
    first.dispose()

    rotated = store_with(NEW_KEY, OLD_KEY)
    with rotated.read() as conn:
        assert links.find(conn, page.id, links.LINK, made.unsubscribe_token) is not None
        row = conn.execute(sa.select(subscribers)).one()
        newer = links.link_token(vault.of(conn), row)
    assert newer != made.unsubscribe_token  # messages from now on carry the new key's
    rotated.dispose()

    dropped = store_with(NEW_KEY)
    with dropped.read() as conn:
        assert links.find(conn, page.id, links.LINK, made.unsubscribe_token) is None
        assert links.find(conn, page.id, links.LINK, newer) is not None
    dropped.dispose()


def test_deliveries_and_the_outbox_keep_no_link(rt_db: Runtime, server: RecordingServer) -> None:
    """What the workers keep to compose a message again names the subscriber, never a
    link: the token is made when the message is."""
    site = make_site(rt_db)
    with rt_db.store.begin() as conn:
        page = subs.page_by_id(conn, site.page_id)
        assert page is not None
        made = subs.subscribe(conn, page, "webhook", f"{server.url}/hook/9")
    open_incident(rt_db, site)
    drain(rt_db)
    with rt_db.store.read() as conn:
        kept = [str(tuple(r)) for t in (deliveries, outbox) for r in conn.execute(sa.select(t))]
    assert kept and not [k for k in kept if made.unsubscribe_token in k]


def test_links_survive_a_downgrade_and_upgrade_again(
    old_store: Store,
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
    db_env: dict[str, str],
) -> None:
    """An operator who rolls back a release and forward again: the links of messages sent
    under 0022 before the rollback (which the downgrade wrote back, so the older release
    honoured them) and of those the older release sent meanwhile are the same tokens, and
    must still unsubscribe after the upgrade that follows (a new selector must not end them)."""
    _old_rows(old_store)
    migrate.upgrade(old_store)
    with old_store.read() as conn:
        rows = conn.execute(sa.select(subscribers).order_by(subscribers.c.id)).all()
        ring = vault.of(conn)
        # By address: a webhook's is its URL (sealed; its `address` is a digest).
        sent = {
            subs.webhook_url(ring, r) if r.channel == "webhook" else r.address: links.link_token(
                ring, r
            )
            for r in rows
        }
        ann_confirm = links.confirm_token(ring, rows[0])
    assert ann_confirm is not None
    migrate.downgrade(old_store, "0021_delivery_threads")
    migrate.upgrade(old_store)

    settings = settings_for(tmp_path, server, BEACON_SECRET_KEY=OLD_KEY, **db_env)
    rt = make_runtime(settings, store=old_store)
    with TestClient(create_app(rt)) as client:
        page = "/p/acme/subscriptions"
        assert client.get(f"{page}/confirm/{ann_confirm}").status_code == 200
        assert client.get(f"{page}/manage/{sent['ann@a.test']}").status_code == 200
        gone = client.post(
            f"{page}/unsubscribe/{sent['https://hooks.b.test/x']}",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert gone.status_code == 200, gone.text
        # The same token on another route or with a character changed still opens nothing.
        assert client.get(f"{page}/confirm/{sent['ann@a.test']}").status_code == 404
        flipped = sent["ann@a.test"][:-1] + ("A" if sent["ann@a.test"][-1] != "A" else "B")
        assert client.get(f"{page}/manage/{flipped}").status_code == 404
    with old_store.read() as conn:
        left = conn.execute(sa.select(subscribers.c.address)).scalars().all()
    assert left == ["ann@a.test"]
