"""Secrets at rest (issue 14, item 1): the store holds no integration key, signing secret,
chat hook URL or webhook secret in plain text; the admin API shows a key once, when it is
made or rotated; a store from before keeps its keys working after the migration; and the
secret key can be changed with the previous one kept for reading."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import channels as channel_writes
from engine import migrate, reseal, sources, vault
from engine import subscribers as subs
from engine.db import Store, create_store
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import JSONType, UTCDateTime, alert_sources, channels, subscribers
from pages.app import create_app
from tests import factories
from tests.admin.conftest import Api

KEY = "legacy-tool-key-0123456789abcdef"
SIGNING = "grafana-signing-secret-0123456789"
HOOK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"
HOOK_SECRET = "channel-shared-secret-9876543210"
FIRING = [{"labels": {"alertname": "Down"}, "status": "firing"}]


def _rows(store: Store) -> str:
    """Every row of the tables that hold secrets, as text."""
    with store.read() as conn:
        return "\n".join(
            str(tuple(row))
            for table in (alert_sources, channels, subscribers)
            for row in conn.execute(sa.select(table))
        )


def _plain_secrets_in(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s in text or s[8:24] in text]


def _alertmanager(api: Api, key: str) -> int:
    body = {"version": "4", "status": "firing", "alerts": FIRING}
    return api.client.post(f"/api/v1/events/{key}", json=body).status_code


def test_the_store_holds_no_secret_and_answers_show_them_only_once(api: Api) -> None:
    assert api.client.post("/api/v1/teams", json={"key": "ops"}, headers=api.admin).is_success
    made = api.client.post(
        "/api/v1/alert-sources",
        json={
            "key": "am",
            "name": "AM",
            "type": "alertmanager",
            "team": "ops",
            "integration_key": KEY,
            "signing_secret": SIGNING,
        },
        headers=api.admin,
    )
    assert made.status_code == 201, made.text
    assert made.json()["integration_key"] == KEY
    assert made.json()["webhook_url"].endswith(f"/api/v1/events/{KEY}")
    generated = api.client.post(
        "/api/v1/alert-sources",
        json={"key": "am2", "name": "AM2", "type": "alertmanager", "team": "ops"},
        headers=api.admin,
    ).json()
    new_key = generated["integration_key"]
    assert len(new_key) >= 32 and generated["key_hint"] == new_key[-4:]
    chan = api.client.post(
        "/api/v1/channels",
        json={"key": "chat", "team": "ops", "type": "slack", "url": HOOK, "secret": HOOK_SECRET},
        headers=api.admin,
    )
    assert chan.status_code == 201, chan.text
    assert chan.json()["url"] == HOOK

    assert not _plain_secrets_in(_rows(api.store), KEY, SIGNING, HOOK, HOOK_SECRET, new_key)
    with api.store.read() as conn:
        for key in (KEY, new_key):
            found = sources.find_by_integration_key(conn, key)
            assert found is not None
        assert sources.find_by_integration_key(conn, KEY).signing_secret == SIGNING  # type: ignore[union-attr]
        row = conn.execute(sa.select(channels)).one()
        assert channel_writes.config_of(conn, row.config) == {"url": HOOK, "secret": HOOK_SECRET}

    # Never again: not in a listing, not in a single read, not to the team's own key.
    team_key = api.key_for("ops")
    for who in (api.admin, team_key):
        for path in ("/api/v1/alert-sources", "/api/v1/channels"):
            listed = api.client.get(path, headers=who)
            assert listed.status_code == 200
            assert not _plain_secrets_in(listed.text, KEY, SIGNING, HOOK, HOOK_SECRET, new_key)
        one = api.client.get(f"/api/v1/alert-sources/{made.json()['id']}", headers=who).json()
        assert one["integration_key"] is None and one["webhook_url"] is None
        assert one["has_signing_secret"] and one["key_hint"] == KEY[-4:]
        chat = api.client.get(f"/api/v1/channels/{chan.json()['id']}", headers=who).json()
        assert chat["url"] is None and chat["has_secret"]

    # The keys authenticate; a key that is nearly one does not.
    assert _alertmanager(api, new_key) == 202
    assert _alertmanager(api, new_key[:-1] + ("A" if new_key[-1] != "A" else "B")) == 404


def test_a_rotated_key_is_shown_once_and_the_old_one_keeps_its_grace(api: Api) -> None:
    assert api.client.post("/api/v1/teams", json={"key": "ops"}, headers=api.admin).is_success
    made = api.client.post(
        "/api/v1/alert-sources",
        json={"key": "am", "name": "AM", "type": "alertmanager", "team": "ops"},
        headers=api.admin,
    ).json()
    old = made["integration_key"]
    rotated = api.client.post(
        "/api/v1/alert-sources/am/rotate-key", json={"grace": 3600}, headers=api.admin
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["integration_key"]
    assert new != old and rotated.json()["url"].endswith(new)
    assert not _plain_secrets_in(_rows(api.store), old, new)
    shown = api.client.get(f"/api/v1/alert-sources/{made['id']}", headers=api.admin)
    assert old not in shown.text and new not in shown.text
    assert shown.json()["key_hint"] == new[-4:]
    assert _alertmanager(api, new) == 202
    assert _alertmanager(api, old) == 202  # in its grace period


# --- a store from before: migrated, its keys still authenticate ---------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store at 0015 (secrets in plain text), on SQLite and on PostgreSQL."""
    env = {"BEACON_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        env["BEACON_DATABASE_URL"] = request.getfixturevalue("pg_url")
    store = create_store(Settings.from_env(env))
    migrate.upgrade(store, "0015_subscriber_imports")
    yield store
    store.dispose()


def _old_rows(conn: sa.Connection) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    team = factories.team(conn, "ops")
    old_sources = sa.table(
        "alert_sources",
        *(
            sa.column(c)
            for c in (
                "id",
                "team_id",
                "key",
                "name",
                "type",
                "integration_key",
                "previous_integration_key",
                "signing_secret",
                "enabled",
            )
        ),
        sa.column("settings", JSONType),
        sa.column("previous_key_expires_at", UTCDateTime),
        sa.column("created_at", UTCDateTime),
        sa.column("updated_at", UTCDateTime),
    )
    conn.execute(
        old_sources.insert().values(
            id=1,
            team_id=team,
            key="am",
            name="AM",
            type="alertmanager",
            integration_key=KEY,
            previous_integration_key="previous-key-abcdefghijklmnop",
            previous_key_expires_at=datetime(2099, 1, 1, tzinfo=UTC),
            signing_secret=SIGNING,
            settings={},
            enabled=True,
            created_at=at,
            updated_at=at,
        )
    )
    conn.execute(
        channels.insert().values(
            team_id=team, key="chat", type="slack", config={"url": HOOK, "secret": HOOK_SECRET}
        )
    )
    page = factories.page(conn, team, "acme")
    old_subscribers = sa.table(
        "subscribers",
        *(
            sa.column(c)
            for c in ("page_id", "channel", "address", "confirmed", "unsubscribe_token")
        ),
        sa.column("webhook_secret"),
        sa.column("created_at", UTCDateTime),
    )
    conn.execute(
        old_subscribers.insert().values(
            page_id=page,
            channel="webhook",
            address="https://receiver.example/hook",
            confirmed=True,
            unsubscribe_token="u" * 32,
            webhook_secret="whsec_" + "A" * 44,
            created_at=at,
        )
    )


def test_a_store_of_plain_secrets_migrates_and_its_keys_still_authenticate(
    old_store: Store, settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    with old_store.begin() as conn:
        _old_rows(conn)
    migrate.upgrade(old_store)

    # The tools post with the keys they had: the intake finds their sources by digest.
    with TestClient(create_app(make_runtime(settings, store=old_store))) as client:
        body = {"version": "4", "status": "firing", "alerts": FIRING}
        for key in (KEY, "previous-key-abcdefghijklmnop"):
            assert client.post(f"/api/v1/events/{key}", json=body).status_code == 202, key
        assert client.post("/api/v1/events/not-a-key-at-all", json=body).status_code == 404

    rows = _rows(old_store)
    assert not _plain_secrets_in(
        rows,
        KEY,
        "previous-key-abcdefghijklmnop",
        SIGNING,
        HOOK,
        HOOK_SECRET,
        "whsec_" + "A" * 44,
        "receiver.example/hook",  # a webhook subscriber's URL (sealed by 0023)
    )
    with old_store.read() as conn:
        found = sources.find_by_integration_key(conn, KEY)
        assert found is not None and found.signing_secret == SIGNING
        assert sources.find_by_integration_key(conn, "previous-key-abcdefghijklmnop") is not None
        chan = conn.execute(sa.select(channels)).one()
        assert channel_writes.config_of(conn, chan.config) == {"url": HOOK, "secret": HOOK_SECRET}
        sub = conn.execute(sa.select(subscribers)).one()
    assert subs.webhook_secret(old_store.keyring, sub.webhook_secret) == "whsec_" + "A" * 44  # type: ignore[arg-type]

    # Reversible where it can be: the encrypted secrets come back in plain text.
    migrate.downgrade(old_store, "0015_subscriber_imports")
    with old_store.read() as conn:
        back = conn.execute(sa.text("SELECT signing_secret FROM alert_sources")).scalar_one()
        assert back == SIGNING
        chan_config = conn.execute(sa.text("SELECT config FROM channels")).scalar_one()
        assert HOOK in str(chan_config)
    migrate.upgrade(old_store)


def test_a_new_secret_key_reads_old_secrets_and_reseal_moves_them(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    first_key, second_key = "a" * 48, "b" * 48
    store = create_store(
        Settings.from_env({"BEACON_DATA_DIR": data, "BEACON_SECRET_KEY": first_key})
    )
    migrate.upgrade(store)
    with store.begin() as conn:
        team = factories.team(conn, "ops")
        sources.create(
            conn,
            team,
            sources.SourceFields("am", "AM", "alertmanager", KEY, SIGNING),
            actor="test",
        )
        channel_writes.create(
            conn, team, channel_writes.ChannelFields("chat", "slack", {"url": HOOK}), actor="test"
        )
    store.dispose()

    # The new key alone opens nothing that the old one sealed, and says which key it needs.
    alone = create_store(
        Settings.from_env({"BEACON_DATA_DIR": data, "BEACON_SECRET_KEY": second_key})
    )
    with alone.read() as conn:
        assert sources.find_by_integration_key(conn, KEY) is None
        sealed = conn.execute(sa.select(channels.c.config)).scalar_one()
        with pytest.raises(vault.VaultError, match="BEACON_PREVIOUS_SECRET_KEYS"):
            channel_writes.config_of(conn, sealed)
    alone.dispose()

    rotated = create_store(
        Settings.from_env(
            {
                "BEACON_DATA_DIR": data,
                "BEACON_SECRET_KEY": second_key,
                "BEACON_PREVIOUS_SECRET_KEYS": first_key,
            }
        )
    )
    with rotated.begin() as conn:
        found = sources.find_by_integration_key(conn, KEY)
        assert found is not None and found.signing_secret == SIGNING
        assert found.stale_digest is not None
        done = reseal.reseal(conn)
        assert done.sealed == 2 and done.stale_digests == 1
        sources.redigest(conn, found.id, KEY, found.stale_digest)
        assert reseal.reseal(conn) == reseal.Resealed(0, 0)
    rotated.dispose()

    # Everything is under the new key now: the old one can go.
    after = create_store(
        Settings.from_env({"BEACON_DATA_DIR": data, "BEACON_SECRET_KEY": second_key})
    )
    with after.read() as conn:
        found = sources.find_by_integration_key(conn, KEY)
        assert found is not None and found.signing_secret == SIGNING
        assert found.stale_digest is None
        chan = conn.execute(sa.select(channels.c.config)).scalar_one()
        assert channel_writes.config_of(conn, chan) == {"url": HOOK}
    after.dispose()


def test_beacon_db_reseal_moves_secrets_to_the_new_key_and_counts_what_still_needs_the_old(
    tmp_path: Path,
) -> None:
    from tests.support import beacon, beacon_env

    data = tmp_path / "data"
    old, new = "o" * 48, "n" * 48
    store = create_store(
        Settings.from_env({"BEACON_DATA_DIR": str(data), "BEACON_SECRET_KEY": old})
    )
    migrate.upgrade(store)
    with store.begin() as conn:
        team = factories.team(conn, "ops")
        sources.create(
            conn, team, sources.SourceFields("am", "AM", "alertmanager", KEY, SIGNING), actor="t"
        )
        # A subscriber migrated from before derived links: its old link's digest.
        conn.execute(
            subscribers.insert().values(
                page_id=factories.page(conn, team, "acme"),
                channel="email",
                address="ann@example.com",
                confirmed=True,
                legacy_link_digest=vault.of(conn).digest("u" * 32),
            )
        )
        # A webhook subscriber: its URL and signing secret are sealed.
        hook = subs.subscribe(
            conn, subs.page_by_slug(conn, "acme"), "webhook", "https://r.example/h/T0K3N"
        )
    store.dispose()
    env = beacon_env(data, {"BEACON_SECRET_KEY": new, "BEACON_PREVIOUS_SECRET_KEYS": old})
    done = beacon(["db", "reseal"], env)
    assert done.returncode == 0, done.stderr
    assert "3 secrets sealed again" in done.stdout
    after = create_store(
        Settings.from_env({"BEACON_DATA_DIR": str(data), "BEACON_SECRET_KEY": new})
    )
    try:
        with after.begin() as conn:
            row = conn.execute(
                sa.select(subscribers).where(subscribers.c.channel == "webhook")
            ).one()
            assert subs.webhook_url(vault.of(conn), row) == "https://r.example/h/T0K3N"
            found = subs.subscribe(
                conn, subs.page_by_slug(conn, "acme"), "webhook", "https://r.example/h/T0K3N"
            )
            assert not found.created and found.subscriber_id == hook.subscriber_id
    finally:
        after.dispose()
    assert "1 alert sources' integration keys are still under a previous key" in done.stdout
    assert "1 subscribers' links sent before" in done.stdout
    assert "messages sent before the key changed work only while" in done.stdout
    assert SIGNING not in done.stdout + done.stderr and KEY not in done.stdout + done.stderr
