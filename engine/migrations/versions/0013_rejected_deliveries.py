"""rejected_deliveries: what the intake refused, per source (issue 19)

Revision ID: 0013_rejected_deliveries
Revises: 0012_rule_owners
Create Date: 2026-12-07 18:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables

revision = "0013_rejected_deliveries"
down_revision = "0012_rule_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rejected_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("at", engine.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("key_hint", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["alert_sources.id"],
            name="fk_rejected_deliveries_source_id_alert_sources",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_deliveries"),
        sqlite_autoincrement=True,  # ids never reused (migration 0007)
    )
    op.create_index(
        "ix_rejected_deliveries_source", "rejected_deliveries", ["source_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_rejected_deliveries_source", table_name="rejected_deliveries")
    op.drop_table("rejected_deliveries")
