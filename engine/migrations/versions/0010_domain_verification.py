"""status pages: a custom domain is served only once verified

Revision ID: 0010_domain_verification
Revises: 0009_sns_host_pattern
Create Date: 2026-11-30 16:30:00

Domains set before verification existed count as verified: they were in use, and taking
them away at an upgrade would take pages offline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables

revision = "0010_domain_verification"
down_revision = "0009_sns_host_pattern"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("status_pages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("domain_token", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "domain_verified_at", engine.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
    op.execute(
        "UPDATE status_pages SET domain_verified_at = updated_at WHERE custom_domain IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("status_pages", schema=None) as batch_op:
        batch_op.drop_column("domain_verified_at")
        batch_op.drop_column("domain_token")
