"""origins: which config file declares an object, or that the UI or API made it

Revision ID: 0017_origins
Revises: 0016_secrets_at_rest
Create Date: 2026-12-07 20:30:00

Objects that existed before take their origin from the audit row that created them
(`apply:<file>` -> the file's name, `user:` -> ui, `api-key:` -> api, others cli); one
without such a row keeps a null origin, which `beacon apply --prune` treats as not
declared by a file.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables

revision = "0017_origins"
down_revision = "0016_secrets_at_rest"
branch_labels = None
depends_on = None

#: Each table, the audit log's name of its kind, and the column its audit rows name it by.
TABLES = [
    ("teams", "team", "key", "id"),
    ("services", "service", "key", "team_id"),
    ("status_pages", "status page", "slug", "team_id"),
    ("incident_templates", "incident template", "key", "team_id"),
    ("maintenance_windows", "maintenance window", "key", "team_id"),
    ("alert_sources", "alert source", "key", "team_id"),
    ("channels", "channel", "key", "team_id"),
]


def upgrade() -> None:
    for table, _, _, _ in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("origin", sa.String(length=500), nullable=True))
            batch_op.add_column(sa.Column("applied", engine.tables.JSONType, nullable=True))
    for table, kind, key, team in TABLES:
        op.execute(
            f"UPDATE {table} SET origin = ("
            "SELECT CASE WHEN a.actor LIKE 'apply:%' THEN substr(a.actor, 7) "
            "WHEN a.actor LIKE 'user:%' THEN 'ui' "
            "WHEN a.actor LIKE 'api-key:%' THEN 'api' ELSE 'cli' END "
            f"FROM audit_log a WHERE a.action = 'create' AND a.object_kind = '{kind}' "
            f"AND a.object_key = {table}.{key} AND a.team_id = {table}.{team} "
            "ORDER BY a.id DESC LIMIT 1)"
        )


def downgrade() -> None:
    for table, _, _, _ in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("applied")
            batch_op.drop_column("origin")
