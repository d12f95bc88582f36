"""status pages: why a verified custom domain was withdrawn by the re-check (issue 14)

Revision ID: 0019_domain_error
Revises: 0018_feed_tokens
Create Date: 2026-12-07 21:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_domain_error"
down_revision = "0018_feed_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("status_pages") as batch:
        batch.add_column(sa.Column("domain_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("status_pages") as batch:
        batch.drop_column("domain_error")
