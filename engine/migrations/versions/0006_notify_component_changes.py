"""status pages: whether people also hear bare component status changes

Revision ID: 0006_notify_component_changes
Revises: 0005_firing_alerts
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_notify_component_changes"
down_revision = "0005_firing_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("status_pages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "notify_component_changes",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("status_pages", schema=None) as batch_op:
        batch_op.drop_column("notify_component_changes")
