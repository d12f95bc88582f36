"""The migrated schema is the one `engine.tables` declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine import migrate
from engine.db import Store, create_store
from engine.settings import Settings
from engine.tables import (
    JSONType,
    UTCDateTime,
    activation_alerts,
    activations,
    metadata,
    teams,
)


def test_migrations_create_every_declared_table(store: Store) -> None:
    names = set(sa.inspect(store.engine).get_table_names())
    assert set(metadata.tables) <= names
    assert migrate.is_current(store)


def test_migrations_match_the_declared_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_twice_changes_nothing(store: Store) -> None:
    before = migrate.current_revision(store)
    migrate.upgrade(store)
    assert migrate.current_revision(store) == before


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of the test's own, on SQLite and on PostgreSQL, not migrated."""
    env = {"BEACON_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        env["BEACON_DATABASE_URL"] = request.getfixturevalue("pg_url")
    store = create_store(Settings.from_env(env))
    yield store
    store.dispose()


def _old_source(conn: sa.Connection, **values: object) -> None:
    """An alert source row as releases before 0016 wrote it (the key in plain text)."""
    values = {
        "name": values["key"],
        "type": "alertmanager",
        "settings": {},
        "enabled": True,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
        **values,
    }
    old = sa.table(
        "alert_sources",
        *(sa.column(c) for c in values if c not in ("settings", "created_at", "updated_at")),
        sa.column("settings", JSONType),
        sa.column("created_at", UTCDateTime),
        sa.column("updated_at", UTCDateTime),
    )
    conn.execute(old.insert().values(**values))


def test_activations_stored_before_the_firing_count_get_theirs(unmigrated_store: Store) -> None:
    store = unmigrated_store
    migrate.upgrade(store, "0004_rules")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    # `activations` as it was at 0004 (engine.tables has the new column).
    acts = sa.table(
        "activations",
        *(sa.column(c) for c in ("id", "team_id", "rule_id", "group_key", "state")),
        sa.column("spec", JSONType),
        sa.column("started_at", UTCDateTime),
    )
    with store.begin() as conn:
        conn.execute(teams.insert().values(id=1, key="t", name="T"))
        _old_source(conn, id=1, team_id=1, key="am", integration_key="k")
        for act_id in (1, 2):
            conn.execute(
                acts.insert().values(
                    id=act_id,
                    team_id=1,
                    rule_id="r",
                    group_key=str(act_id),
                    state="active",
                    spec={},
                    started_at=at,
                )
            )
        conn.execute(
            activation_alerts.insert(),
            [
                {"activation_id": 1, "source_id": 1, "dedup_key": key, "firing": firing}
                | {"first_fired_at": at, "last_occurred_at": at}
                for key, firing in (("a", True), ("b", False), ("c", True))
            ],
        )
    migrate.upgrade(store)
    with store.read() as conn:
        counts = conn.execute(
            sa.select(activations.c.id, activations.c.firing_alerts).order_by(activations.c.id)
        ).all()
    assert [tuple(c) for c in counts] == [(1, 2), (2, 0)]
