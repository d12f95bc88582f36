"""alert sources: which hosts are SNS is the operator's setting, no longer a source's

Revision ID: 0009_sns_host_pattern
Revises: 0008_sessions
Create Date: 2026-11-30 16:00:00

`sns_host_pattern` steered where Beacon fetches certificates from, and any team could set
it on its CloudWatch sources; it is now `BEACON_SNS_HOST_PATTERN`. Stored sources drop the
key (the adapter refuses unknown settings, so a stored one would refuse every delivery).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.tables import JSONType

revision = "0009_sns_host_pattern"
down_revision = "0008_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    sources = sa.table(
        "alert_sources", sa.column("id", sa.Integer), sa.column("type"), sa.column("settings", JSONType)
    )
    rows = conn.execute(
        sa.select(sources.c.id, sources.c.settings).where(sources.c.type == "cloudwatch")
    ).all()
    for source_id, settings in rows:
        if isinstance(settings, dict) and "sns_host_pattern" in settings:
            kept = {k: v for k, v in settings.items() if k != "sns_host_pattern"}
            conn.execute(sources.update().where(sources.c.id == source_id).values(settings=kept))


def downgrade() -> None:
    pass  # the key is gone; sources work without it
