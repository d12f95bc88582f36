"""deliveries: the thread and step of people's notifications, for coalescing (issue 15)

Revision ID: 0021_delivery_threads
Revises: 0020_window_keys
Create Date: 2026-12-07 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_delivery_threads"
down_revision = "0020_window_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thread", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("step", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_deliveries_subscriber_thread", ["subscriber_id", "thread", "step"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_subscriber_thread")
        batch_op.drop_column("step")
        batch_op.drop_column("thread")
