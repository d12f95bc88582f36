"""Ids are never reused: a deleted row's id never names a new row (sessions, outbox dedup keys
and links rely on it). PostgreSQL's sequences never go back; on SQLite every table with an
integer id is AUTOINCREMENT."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import migrate
from engine.db import Store, create_store
from engine.settings import Settings
from engine.tables import UTCDateTime, metadata, services, status_pages, teams


def _integer_keyed() -> list[sa.Table]:
    return [
        t
        for t in metadata.sorted_tables
        if "id" in t.c and t.c.id.primary_key and isinstance(t.c.id.type, sa.Integer)
    ]


def _filler(column: sa.Column[Any]) -> Any:
    """A value any NOT NULL column without a default accepts (foreign keys are off here)."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return datetime(2026, 1, 1, tzinfo=UTC)
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer):
        return 1
    if isinstance(kind, sa.LargeBinary):
        return b"x"
    if isinstance(kind, sa.JSON):
        return {}
    return "x"


def _row(table: sa.Table) -> dict[str, Any]:
    return {
        c.name: _filler(c)
        for c in table.c
        if c.name != "id" and not c.nullable and c.default is None and c.server_default is None
    }


@pytest.fixture
def unmigrated_sqlite(settings: Settings) -> Iterator[Store]:
    store = create_store(settings)
    yield store
    store.dispose()


@pytest.fixture
def without_foreign_keys(sqlite_store: Store) -> Iterator[Connection]:
    """A write transaction on the SQLite store with foreign keys off, so that any table can
    take a row without its parents."""
    with sqlite_store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def test_no_table_gives_a_deleted_rows_id_to_a_new_row(without_foreign_keys: Connection) -> None:
    conn = without_foreign_keys
    tables = _integer_keyed()
    assert len(tables) >= 28  # every table with an integer key is walked
    reused = []
    for table in tables:
        values = _row(table)
        newest = conn.execute(table.insert().values(**values)).inserted_primary_key
        assert newest is not None
        conn.execute(table.delete().where(table.c.id == newest[0]))
        again = conn.execute(table.insert().values(**values)).inserted_primary_key
        assert again is not None
        if again[0] <= newest[0]:
            reused.append(table.name)
    assert reused == []


def test_every_integer_keyed_table_is_autoincrement_in_the_migrated_store(
    sqlite_store: Store,
) -> None:
    with sqlite_store.read() as conn:
        ddl = dict(
            conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
        )
    missing = [t.name for t in _integer_keyed() if "AUTOINCREMENT" not in ddl[t.name].upper()]
    assert missing == []


def test_upgrading_keeps_every_row_and_its_references(unmigrated_sqlite: Store) -> None:
    store = unmigrated_sqlite
    # A database made before 0007: tables without AUTOINCREMENT (0001 now makes them with
    # it; the downgrade gives them back as they were).
    migrate.upgrade(store)
    migrate.downgrade(store, "0006_notify_component_changes")
    with store.begin() as conn:
        for team_id in (1, 2):
            conn.execute(teams.insert().values(id=team_id, key=f"t{team_id}", name="T"))
            conn.execute(
                services.insert().values(id=team_id, team_id=team_id, key="api", name="API")
            )
            conn.execute(
                status_pages.insert()
                .values(id=team_id, team_id=team_id, slug=f"s{team_id}")
                .values(name="S")
            )
    migrate.upgrade(store)
    with store.begin() as conn:
        # Dropping `teams` while rebuilding it must not have cascaded to its services.
        assert conn.execute(sa.select(sa.func.count()).select_from(services)).scalar() == 2
        assert conn.execute(sa.select(sa.func.count()).select_from(status_pages)).scalar() == 2
        conn.execute(teams.delete().where(teams.c.id == 2))
        # The references survived the rebuild: deleting a team still takes its objects.
        assert conn.execute(sa.select(services.c.team_id)).scalars().all() == [1]
        made = conn.execute(teams.insert().values(key="t3", name="T")).inserted_primary_key
    assert made is not None and made[0] == 3


def test_a_downgrade_gives_the_tables_back_without_autoincrement(unmigrated_sqlite: Store) -> None:
    store = unmigrated_sqlite
    migrate.upgrade(store)
    migrate.downgrade(store, "0006_notify_component_changes")
    assert "AUTOINCREMENT" not in _ddl(store, "teams").upper()
    migrate.upgrade(store)
    assert "AUTOINCREMENT" in _ddl(store, "teams").upper()
    assert migrate.is_current(store)


def _ddl(store: Store, table: str) -> str:
    with store.read() as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).scalar_one()
        )
