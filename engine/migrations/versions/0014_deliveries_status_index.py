"""deliveries: an index on (status, updated_at) for the retention purge and the sweeps

The daily purge deletes finished deliveries (`sent`, `failed`) by their last change, and
the notification sweeps look for `pending` and `sending` ones past a time; without an
index each of them read the whole table, which holds every notification sent in the
retention period (90 days by default).

Revision ID: 0014_deliveries_status_index
Revises: 0013_rejected_deliveries
Create Date: 2026-12-07 20:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0014_deliveries_status_index"
down_revision = "0013_rejected_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_status_updated", "deliveries", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_updated", table_name="deliveries")
