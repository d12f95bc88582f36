"""Config as code beside the UI (issue 16, item 12): what a config file declares is marked
with the file, an edit made elsewhere since is drift, and `--prune` leaves what the UI,
the API or the CLI made unless `--prune-all` says otherwise."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from config import apply_file
from config.plan import Left
from engine import maintenance, migrate, services
from engine import teams as team_writes
from engine.db import Store, create_store
from engine.settings import Settings
from engine.tables import alert_sources, maintenance_windows, status_pages, teams
from engine.tables import services as service_rows
from tests.conftest import ROOT

TEAM = """\
teams:
  - {key: platform}
services:
  - {key: api, name: Public API, group: Core, team: platform}
  - {key: db, name: Database, group: Core, team: platform}
"""


def example_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path / "examples" / "beacon.yaml"


def origin_of(store: Store, table: sa.Table, key: str) -> tuple[Any, Any]:
    column = table.c.slug if table is status_pages else table.c.key
    with store.read() as conn:
        row = conn.execute(sa.select(table.c.origin, table.c.applied).where(column == key)).one()
    return row.origin, row.applied


def service_id(store: Store, key: str) -> int:
    with store.read() as conn:
        return int(
            conn.execute(sa.select(service_rows.c.id).where(service_rows.c.key == key)).scalar_one()
        )


def make_service(store: Store, key: str, actor: str) -> None:
    with store.begin() as conn:
        team_id = conn.execute(sa.select(teams.c.id).where(teams.c.key == "platform")).scalar_one()
        services.create(conn, team_id, services.ServiceFields(key, key.title()), actor=actor)


def edit_group(store: Store, key: str, group: str, actor: str) -> None:
    """What the admin UI's and API's service edits call (one write path)."""
    with store.begin() as conn:
        changes = services.ServiceChanges(group=group)
        services.update(conn, service_id(store, key), changes, actor=actor)


def test_apply_marks_what_the_file_declares_and_the_ui_and_api_mark_what_they_make(
    store: Store, tmp_path: Path
) -> None:
    path = example_copy(tmp_path)
    apply_file(store, path)
    origin, applied = origin_of(store, service_rows, "api")
    assert origin == str(path.resolve())
    assert applied == {
        "name": "Public API",
        "description": "REST and GraphQL API",
        "group": "Web",
    }
    assert origin_of(store, status_pages, "northwind")[0] == str(path.resolve())
    # Secrets are never kept as what the file set.
    assert "integration_key" not in origin_of(store, alert_sources, "uptime-kuma")[1]
    make_service(store, "made-in-ui", "user:ops@example.test")
    make_service(store, "made-over-api", "api-key:deploy-bot")
    make_service(store, "made-by-cli", "cli")
    assert origin_of(store, service_rows, "made-in-ui") == ("ui", None)
    assert origin_of(store, service_rows, "made-over-api") == ("api", None)
    assert origin_of(store, service_rows, "made-by-cli") == ("cli", None)


def test_a_ui_edit_of_a_declared_field_is_drift_that_says_who_and_apply_sets_it_back(
    store: Store, tmp_path: Path
) -> None:
    path = example_copy(tmp_path)
    apply_file(store, path)
    edit_group(store, "api", "Core", "user:ops@example.test")

    plan = apply_file(store, path, dry_run=True)
    assert [(c.action, c.kind, c.key, c.fields) for c in plan.changes] == [
        ("update", "service", "platform/api", {"group": ("Core", "Web")})
    ]
    assert [(d.kind, d.key, d.field, d.was, d.now) for d in plan.drift] == [
        ("service", "platform/api", "group", "Web", "Core")
    ]
    rendered = plan.render()
    assert (
        "service platform/api: group changed in the UI by ops@example.test, " in rendered
        and "from 'Web' to 'Core'" in rendered
    ), rendered

    apply_file(store, path)
    again = apply_file(store, path, dry_run=True)
    assert not again.changed and again.drift == []


def test_an_edit_over_the_api_says_so_and_a_change_of_the_file_is_no_drift(
    store: Store, tmp_path: Path
) -> None:
    path = example_copy(tmp_path)
    apply_file(store, path)
    path.write_text(path.read_text().replace("name: Database,", "name: Primary Database,"))
    edited = apply_file(store, path, dry_run=True)
    assert [c.key for c in edited.changes] == ["platform/db"] and edited.drift == []

    edit_group(store, "search", "Web", "api-key:deploy-bot")
    plan = apply_file(store, path, dry_run=True)
    assert [(d.key, d.field) for d in plan.drift] == [("platform/search", "group")]
    assert "changed over the API by deploy-bot" in plan.render()


def test_an_edit_that_the_file_now_agrees_with_is_neither_change_nor_drift(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(TEAM)
    apply_file(store, path)
    edit_group(store, "db", "Storage", "user:ops@example.test")
    path.write_text(TEAM.replace("name: Database, group: Core", "name: Database, group: Storage"))
    plan = apply_file(store, path, dry_run=True)
    assert not plan.changed and plan.drift == []
    apply_file(store, path)
    assert origin_of(store, service_rows, "db")[1]["group"] == "Storage"


def test_prune_leaves_what_the_ui_api_and_cli_made_and_prune_all_deletes_it(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(TEAM)
    apply_file(store, path)
    make_service(store, "made-in-ui", "user:ops@example.test")
    make_service(store, "made-over-api", "api-key:deploy-bot")
    path.write_text(
        TEAM.replace("  - {key: db, name: Database, group: Core, team: platform}\n", "")
    )

    plan = apply_file(store, path, prune=True)
    assert [(c.action, c.key) for c in plan.changes] == [("delete", "platform/db")]
    assert plan.kept == [
        Left("service", "platform/made-in-ui", "ui"),
        Left("service", "platform/made-over-api", "api"),
    ]
    rendered = plan.render()
    assert "Left by --prune" in rendered and "service platform/made-in-ui (made in: ui)" in rendered

    pruned = apply_file(store, path, prune_all=True, dry_run=True)
    assert sorted(c.key for c in pruned.changes if c.action == "delete") == [
        "platform/made-in-ui",
        "platform/made-over-api",
    ]


def test_a_file_that_declares_an_object_made_in_the_ui_adopts_it_without_a_change(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(TEAM)
    apply_file(store, path)
    make_service(store, "web", "user:ops@example.test")
    path.write_text(TEAM + "  - {key: web, name: Web, team: platform, position: 0}\n")
    plan = apply_file(store, path)
    assert not plan.changed
    assert plan.adopted == [Left("service", "platform/web", "ui")]
    assert origin_of(store, service_rows, "web")[0] == str(path.resolve())


def test_the_cli_dry_run_exits_1_when_something_would_change_and_0_when_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    monkeypatch.setenv("BEACON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BEACON_DATABASE_URL", raising=False)
    path = example_copy(tmp_path)
    assert main(["apply", "--dry-run", str(path)]) == 1
    assert main(["apply", str(path)]) == 0
    assert main(["apply", "--dry-run", str(path)]) == 0
    capsys.readouterr()
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(tmp_path / "data")}))
    try:
        edit_group(store, "api", "Core", "user:ops@example.test")
    finally:
        store.dispose()
    assert main(["apply", "--dry-run", str(path)]) == 1
    assert "service platform/api: group changed in the UI by ops@example.test" in (
        capsys.readouterr().out
    )


def test_the_migration_takes_each_objects_origin_from_the_audit_row_that_made_it(
    store: Store,
) -> None:
    migrate.downgrade(store, "0016_secrets_at_rest")
    with store.begin() as conn:
        for key, actor in (("a", "apply:beacon.yaml"), ("b", "user:x@y.test"), ("c", "t")):
            conn.execute(
                sa.text(
                    "INSERT INTO teams (key, name, private, created_at, updated_at) "
                    "VALUES (:k, '', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"k": key},
            )
            team_id = conn.execute(
                sa.text("SELECT id FROM teams WHERE key = :k"), {"k": key}
            ).scalar_one()
            conn.execute(
                sa.text(
                    "INSERT INTO audit_log (at, team_id, actor, action, object_kind, object_key, "
                    "detail) VALUES (CURRENT_TIMESTAMP, :t, :a, 'create', 'team', :k, '{}')"
                ),
                {"t": team_id, "a": actor, "k": key},
            )
        conn.execute(
            sa.text(
                "INSERT INTO teams (key, name, private, created_at, updated_at) "
                "VALUES ('d', '', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    migrate.upgrade(store)
    with store.read() as conn:
        found = dict(conn.execute(sa.select(teams.c.key, teams.c.origin)).all())
    assert found == {"a": "beacon.yaml", "b": "ui", "c": "cli", "d": None}


def test_the_window_keys_migration_names_the_windows_made_without_one(store: Store) -> None:
    insert = "INSERT INTO maintenance_windows (public_id, team_id, title, message, starts_at, "
    migrate.downgrade(store, "0019_domain_error")
    with store.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO teams (key, name, private, created_at, updated_at) "
                "VALUES ('p', '', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        team_id = conn.execute(sa.text("SELECT id FROM teams WHERE key = 'p'")).scalar_one()
        for public_id, key in (("abc123", None), ("def456", "kept")):
            conn.execute(
                sa.text(
                    insert + "ends_at, notify, on_end, status, created_at, updated_at, key) "
                    "VALUES (:p, :t, 'T', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, false, "
                    "'replay', 'scheduled', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :k)"
                ),
                {"p": public_id, "t": team_id, "k": key},
            )
    migrate.upgrade(store)
    with store.read() as conn:
        keys: dict[str, str] = dict(
            conn.execute(sa.text("SELECT public_id, key FROM maintenance_windows")).all()
        )
    assert keys == {"abc123": "window-abc123", "def456": "kept"}


def test_a_window_made_without_a_key_gets_one_from_its_title(store: Store) -> None:
    ui = "user:ops@example.test"
    with store.begin() as conn:
        team_id = team_writes.create(conn, team_writes.TeamFields("platform", ""), actor=ui)
        service = services.create(conn, team_id, services.ServiceFields("db", "Database"), actor=ui)
        start = datetime.now(UTC) + timedelta(days=1)
        made = maintenance.create(
            conn,
            team_id=team_id,
            title="Database: upgrade to 17!",
            starts_at=start,
            ends_at=start + timedelta(hours=1),
            service_ids=[service],
            actor=ui,
        )
        key, origin = conn.execute(
            sa.select(maintenance_windows.c.key, maintenance_windows.c.origin).where(
                maintenance_windows.c.id == made
            )
        ).one()
    assert re.fullmatch(r"database-upgrade-to-17-[a-z0-9]{5}", key) and origin == "ui"
