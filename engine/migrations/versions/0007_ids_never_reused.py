"""ids are never reused: SQLite tables with AUTOINCREMENT

Revision ID: 0007_ids_never_reused
Revises: 0006_notify_component_changes
Create Date: 2026-12-01 09:00:00

Without AUTOINCREMENT SQLite gives a new row the largest id in use plus one, so deleting
the newest row hands its id to the next one: a session, an outbox dedup key or a link
naming the deleted row would then name a stranger. AUTOINCREMENT is part of a SQLite
table's CREATE statement, so every table with an integer id that lacks it is rebuilt
(Alembic's batch mode: create, copy, drop, rename). Databases created since this migration
was written have it from 0001 on, and skip the rebuild. `engine.migrate.upgrade` runs SQLite migrations with
foreign keys off, as a rebuild needs: dropping a referenced table would otherwise delete
the rows referring to it through ON DELETE CASCADE. PostgreSQL's sequences never go back,
so there is nothing to do there.

Ids given out and freed before this migration may still be given out once more (SQLite
kept no record of them); from here on, never.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_ids_never_reused"
down_revision = "0006_notify_component_changes"
branch_labels = None
depends_on = None

#: Every table with an integer `id` key when this migration was written (a later table is
#: created with AUTOINCREMENT by its own migration; `engine.tables` says so for all).
TABLES = (
    "teams",
    "users",
    "api_keys",
    "services",
    "status_changes",
    "assets",
    "status_pages",
    "page_groups",
    "page_services",
    "incident_templates",
    "incidents",
    "incident_updates",
    "maintenance_windows",
    "maintenance_updates",
    "alert_sources",
    "alert_events",
    "rule_sets",
    "activations",
    "activation_alerts",
    "claims",
    "held_alerts",
    "rule_errors",
    "channels",
    "subscribers",
    "deliveries",
    "audit_log",
    "outbox",
    "deadlines",
)


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    tables = bind.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    ddl: dict[str, str] = {name: sql for name, sql in tables}
    todo = [t for t in TABLES if ("AUTOINCREMENT" in ddl[t].upper()) != autoincrement]
    if not todo:
        return
    # Reflected once for all (batch mode would reflect each table and those it references
    # again for every table): the rebuilt tables keep their columns, keys and indexes.
    found = sa.MetaData()
    found.reflect(bind, only=todo)
    for name in todo:
        with op.batch_alter_table(
            name,
            copy_from=found.tables[name],
            recreate="always",
            table_kwargs={"sqlite_autoincrement": autoincrement},
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
