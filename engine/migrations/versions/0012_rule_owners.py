"""rule sets: which teams each rule file is for

Revision ID: 0012_rule_owners
Revises: 0011_delivery_retries
Create Date: 2026-12-07 17:30:00

Rule sets stored before owners existed keep a null `owners`: their rules hear every team's
sources, as they did. The next `beacon apply` with `rules:` replaces them with owned files.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables

revision = "0012_rule_owners"
down_revision = "0011_delivery_retries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rule_sets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owners", engine.tables.JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rule_sets", schema=None) as batch_op:
        batch_op.drop_column("owners")
