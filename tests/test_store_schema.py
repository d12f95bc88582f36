"""The migrated schema is the one `engine.tables` declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from engine import migrate
from engine.db import Store
from engine.tables import metadata


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
