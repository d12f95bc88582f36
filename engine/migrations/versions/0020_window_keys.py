"""window keys: every maintenance window has one, so a config file can name it

Revision ID: 0020_window_keys
Revises: 0019_domain_error
Create Date: 2026-12-07 21:00:00

Windows made over the admin API or in the web UI had no key, so `beacon export` could not
write them; `engine.maintenance.create` now makes one from the title, and the windows made
before get `window-<public id>` (unique, as public ids are).
"""

from __future__ import annotations

from alembic import op

revision = "0020_window_keys"
down_revision = "0019_domain_error"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE maintenance_windows SET key = 'window-' || public_id WHERE key IS NULL")


def downgrade() -> None:
    """The keys stay: a window with a key is one the older code reads as the file's."""
