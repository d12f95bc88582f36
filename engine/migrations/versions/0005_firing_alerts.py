"""activations: how many of their alerts fire

Revision ID: 0005_firing_alerts
Revises: 0004_rules
Create Date: 2026-11-29 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_firing_alerts"
down_revision = "0004_rules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("firing_alerts", sa.Integer(), server_default="0", nullable=False)
        )
    # Activations stored before this count existed: count their firing alerts once.
    op.execute(
        "UPDATE activations SET firing_alerts = ("
        "SELECT count(*) FROM activation_alerts"
        " WHERE activation_alerts.activation_id = activations.id"
        " AND activation_alerts.firing)"
    )


def downgrade() -> None:
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.drop_column("firing_alerts")
