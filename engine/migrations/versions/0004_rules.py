"""rules: when an activation next needs the clock

Revision ID: 0004_rules
Revises: 0001
Create Date: 2026-11-29 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables

revision = "0004_rules"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("due_at", engine.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_activations_due", ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.drop_index("ix_activations_due")
        batch_op.drop_column("due_at")
