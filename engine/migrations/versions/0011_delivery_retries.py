"""deliveries: when a delivery may be tried again; subscribers: permanent failures in a row

Revision ID: 0011_delivery_retries
Revises: 0010_domain_verification
Create Date: 2026-12-07 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables

revision = "0011_delivery_retries"
down_revision = "0010_domain_verification"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", engine.tables.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("permanent_failures", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("permanent_failures")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("next_attempt_at")
