"""feed_tokens: personal feed links for private pages (issue 14)

Revision ID: 0018_feed_tokens
Revises: 0017_origins
Create Date: 2026-12-07 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables

revision = "0018_feed_tokens"
down_revision = "0017_origins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=False),
        sa.Column("created_at", engine.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", engine.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", engine.tables.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["page_id"],
            ["status_pages.id"],
            name="fk_feed_tokens_page_id_status_pages",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_feed_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_feed_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_feed_tokens_token_hash"),
        sqlite_autoincrement=True,  # ids never reused (migration 0007)
    )
    op.create_index("ix_feed_tokens_user_id", "feed_tokens", ["user_id"], unique=False)
    op.create_index("ix_feed_tokens_page_id", "feed_tokens", ["page_id"], unique=False)


def downgrade() -> None:
    op.drop_table("feed_tokens")
