"""subscribers: who imported a row, when, and whether its confirmation was skipped

Revision ID: 0015_subscriber_imports
Revises: 0014_deliveries_status_index
Create Date: 2026-12-07 20:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables

revision = "0015_subscriber_imports"
down_revision = "0014_deliveries_status_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("imported_by", sa.String(length=320), nullable=True))
        batch_op.add_column(
            sa.Column("imported_at", engine.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "confirmation_skipped", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("confirmation_skipped")
        batch_op.drop_column("imported_at")
        batch_op.drop_column("imported_by")
