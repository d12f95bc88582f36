"""`beacon export` (issue 16, item 12): the state as a config file that `beacon apply` takes
back with no change, on the example and after edits made in the UI and the API, and that
a fresh store takes to the same state; secrets are never printed."""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from config import apply_file
from config.export import Exported, env_name, export_config
from engine import channels, maintenance, migrate, services, sources, statuspages
from engine.db import Store, create_store
from engine.errors import ConfigError
from engine.settings import Settings
from engine.tables import alert_sources, status_pages, teams
from engine.tables import services as service_rows
from tests.conftest import PG_ADMIN_URL, ROOT

UI = "user:ops@example.test"
SIGNING_SECRET = "grafana-signing-secret-" + secrets.token_hex(4)
HOOK_URL = "https://hooks.slack.com/services/T0/B0/" + secrets.token_hex(8)
HOOK_SECRET = "hook-secret-" + secrets.token_hex(4)


def example_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path / "examples" / "beacon.yaml"


def written(exported: Exported, where: Path) -> Path:
    """The exported file and the files it names, as `beacon export -o` writes them."""
    where.mkdir(parents=True, exist_ok=True)
    for name, data in exported.files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_bytes(data)
    path = where / "beacon.yaml"
    path.write_text(exported.text)
    return path


@contextlib.contextmanager
def fresh_store_like(store: Store, tmp_path: Path) -> Iterator[Store]:
    """An empty, migrated store of the same kind (SQLite file or PostgreSQL database)."""
    env = {"BEACON_DATA_DIR": str(tmp_path / "fresh")}
    name = f"beacon_test_{secrets.token_hex(6)}"
    if store.dialect != "sqlite":
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        env["BEACON_DATABASE_URL"] = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    fresh = create_store(Settings.from_env(env))
    try:
        migrate.upgrade(fresh)
        yield fresh
    finally:
        fresh.dispose()
        if store.dialect != "sqlite":
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def edit_in_the_ui(store: Store) -> None:
    """What the admin UI and API do (their write path, with their actors): a new service and
    a page showing it, a declared service moved to another group, a source that signs, a
    channel with a secret URL, a maintenance window scheduled without a key."""
    with store.begin() as conn:
        team_id = conn.execute(sa.select(teams.c.id).where(teams.c.key == "platform")).scalar_one()
        ids = dict(conn.execute(sa.select(service_rows.c.key, service_rows.c.id)).all())
        payments = services.create(
            conn, team_id, services.ServiceFields("payments", "Payments", group="Core"), actor=UI
        )
        services.update(conn, ids["api"], services.ServiceChanges(group="Core"), actor=UI)
        page = statuspages.PageFields(
            slug="payments",
            name="Payments Status",
            team_ids=[team_id],
            service_ids=[payments, ids["api"]],
            time_zone="Europe/Paris",
            active=False,
        )
        statuspages.create(conn, page, actor=UI)
        source = sources.SourceFields(
            key="grafana", name="Grafana", type="grafana", signing_secret=SIGNING_SECRET
        )
        sources.create(conn, team_id, source, actor="api-key:deploy-bot")
        channel = channels.ChannelFields(
            key="ops-slack", type="slack", config={"url": HOOK_URL, "secret": HOOK_SECRET}
        )
        channels.create(conn, team_id, channel, actor=UI)
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        maintenance.create(
            conn,
            team_id=team_id,
            title="Payments: card network upgrade",
            starts_at=start,
            ends_at=start + timedelta(hours=2),
            service_ids=[payments],
            actor=UI,
        )


def secrets_for_a_fresh_store() -> dict[str, str]:
    """The environment that gives an export's secrets their values on a fresh store: the
    integration keys are digests here (they cannot be read back), so new ones."""
    found = {
        env_name("platform", key, "integration_key"): f"fresh-{key}-{secrets.token_hex(8)}"
        for key in ("uptime-kuma", "alertmanager", "grafana")
    }
    found[env_name("platform", "grafana", "signing_secret")] = SIGNING_SECRET
    found[env_name("platform", "ops-slack", "url")] = HOOK_URL
    found[env_name("platform", "ops-slack", "secret")] = HOOK_SECRET
    return found


def test_the_examples_export_applies_back_with_no_change(store: Store, tmp_path: Path) -> None:
    apply_file(store, example_copy(tmp_path))
    exported = export_config(store)
    path = written(exported, tmp_path)
    plan = apply_file(store, path, dry_run=True)
    assert not plan.changed and plan.drift == [], plan.render()
    assert not apply_file(store, path, prune=True, dry_run=True).changed
    assert export_config(store).text == exported.text  # stable


def test_an_export_after_ui_edits_applies_back_unchanged_and_rebuilds_a_fresh_store(
    store: Store, tmp_path: Path
) -> None:
    apply_file(store, example_copy(tmp_path))
    edit_in_the_ui(store)
    exported = export_config(store)
    for secret in (SIGNING_SECRET, HOOK_URL, HOOK_SECRET, "example-uptime-kuma-key-change-me"):
        assert secret not in exported.text
    assert "{env: PLATFORM_GRAFANA_SIGNING_SECRET}" in exported.text
    # A window made without a key has one from its title, so the file names it.
    assert re.search(r"key: payments-card-network-upgrade-[a-z0-9]{5}\n", exported.text)
    path = written(exported, tmp_path / "out")

    plan = apply_file(store, path, dry_run=True)
    assert not plan.changed and plan.drift == [], plan.render()
    applied = apply_file(store, path)
    assert not applied.changed
    assert {(a.kind, a.key) for a in applied.adopted} >= {
        ("service", "platform/payments"),
        ("status page", "payments"),
        ("alert source", "platform/grafana"),
    }

    env = secrets_for_a_fresh_store()
    body = "\n".join(line for line in exported.text.splitlines() if not line.startswith("#"))
    assert set(env) == set(re.findall(r"\{env: ([A-Z0-9_]+)\}", body))
    with fresh_store_like(store, tmp_path) as fresh:
        apply_file(fresh, path, env=env)
        again = export_config(fresh)
        assert again.text == exported.text
        assert again.files == exported.files
        assert not apply_file(fresh, path, dry_run=True, env=env).changed
        with fresh.read() as conn:
            sealed = conn.execute(
                sa.select(alert_sources.c.signing_secret).where(alert_sources.c.key == "grafana")
            ).scalar_one()
            assert sealed != SIGNING_SECRET  # encrypted at rest, as every stored secret
            assert sources.signing_secret(conn, sealed) == SIGNING_SECRET


def test_the_exported_order_is_the_files_order_whatever_the_store_returns(
    store: Store, tmp_path: Path
) -> None:
    apply_file(store, example_copy(tmp_path))
    text = export_config(store).text
    kinds = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert kinds == [
        "teams",
        "services",
        "alert_sources",
        "incident_templates",
        "maintenance_windows",
        "status_pages",
        "rules",
    ]
    assert text.index("key: website") < text.index("key: app") < text.index("key: webhooks")


def test_an_env_secret_is_read_and_an_unset_one_for_a_new_object_is_an_error(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(
        "teams:\n  - {key: platform}\n"
        "channels:\n"
        "  - {key: hook, team: platform, type: webhook, url: {env: HOOK_URL}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        apply_file(store, path, env={})
    assert f"{path}:4:48: environment variable HOOK_URL is not set" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        apply_file(store, path, env={"HOOK_URL": "ftp://nope/secret-part"})
    assert "environment variable HOOK_URL: String should match pattern" in str(caught.value)
    assert "secret-part" not in str(caught.value)
    apply_file(store, path, env={"HOOK_URL": HOOK_URL})
    kept = apply_file(store, path, env={}, dry_run=True)
    assert not kept.changed
    assert any("HOOK_URL is not set; the stored url is kept" in w for w in kept.warnings)
    changed = apply_file(store, path, env={"HOOK_URL": HOOK_URL + "x"}, dry_run=True)
    assert [(c.key, list(c.fields)) for c in changed.changes] == [("platform/hook", ["config"])]
    assert HOOK_URL not in changed.render()


def test_export_of_one_team_leaves_the_others_out(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(
        "teams:\n  - {key: platform}\n  - {key: acme, private: true}\n"
        "services:\n  - {key: api, name: API, team: platform}\n"
        "  - {key: portal, name: Portal, team: acme}\n"
    )
    apply_file(store, path)
    text = export_config(store, teams=["acme"]).text
    assert "portal" in text and "api" not in text and "platform" not in text
    with pytest.raises(ConfigError, match="no team 'nope'"):
        export_config(store, teams=["nope"])


def test_the_cli_exports_to_a_file_that_a_dry_run_finds_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    monkeypatch.setenv("BEACON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BEACON_DATABASE_URL", raising=False)
    assert main(["apply", str(example_copy(tmp_path))]) == 0
    out = tmp_path / "exported" / "beacon.yaml"
    out.parent.mkdir()
    assert main(["export", "-o", str(out)]) == 0
    assert (tmp_path / "exported" / "assets" / "northwind-logo.png").is_file()
    assert (tmp_path / "exported" / "rules" / "uptime.yaml").is_file()
    capsys.readouterr()
    assert main(["apply", "--dry-run", str(out)]) == 0
    assert "no changes" in capsys.readouterr().out
    assert main(["export"]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_a_page_shared_by_two_teams_names_a_key_both_have_by_team(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(
        "teams:\n  - {key: a}\n  - {key: b}\n"
        "services:\n  - {key: api, name: API, team: a}\n  - {key: api, name: API, team: b}\n"
        "  - {key: db, name: DB, team: b}\n"
        "status_pages:\n  - {slug: shared, name: Shared, teams: [a, b],\n"
        "     services: [a/api, b/api, db]}\n"
    )
    apply_file(store, path)
    exported = export_config(store)
    assert "services: [a/api, b/api, db]" in exported.text
    assert not apply_file(store, written(exported, tmp_path / "out"), dry_run=True).changed
    with store.read() as conn:
        assert conn.execute(sa.select(status_pages.c.slug)).scalar_one() == "shared"


def test_a_completed_window_is_history_and_left_out(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(
        "teams:\n  - {key: platform}\n"
        "services:\n  - {key: db, name: Database, team: platform}\n"
        "maintenance_windows:\n"
        "  - {key: past, team: platform, services: [db], start: 2026-01-01T00:00:00Z,\n"
        "     end: 2026-01-01T01:00:00Z, title: Done}\n"
    )
    apply_file(store, path)
    with store.begin() as conn:
        conn.execute(sa.text("UPDATE maintenance_windows SET status = 'completed'"))
    exported = export_config(store)
    assert "maintenance_windows" not in exported.text and "key: db" in exported.text
    assert not apply_file(store, written(exported, tmp_path / "out"), dry_run=True).changed
