"""subscribers: a webhook's URL sealed at rest, found by a keyed lookup digest

Revision ID: 0023_webhook_urls_sealed
Revises: 0022_subscriber_link_tokens
Create Date: 2026-12-08 00:20:00

A webhook subscriber's URL was its `address`, in plain text: its path and query are the
receiver's secret (a Slack-style hook's path, a token in the query), so a copy of the
database let anyone post forged updates to receivers that do not check signatures. Each
webhook row now keeps the URL encrypted (`webhook_url`, engine.vault, under
`BEACON_SECRET_KEY`), its scheme and host (`webhook_host`, what managers see), and as its
`address` the keyed lookup digest of the page and URL, which the unique index of
`(page, channel, address)` holds, so subscribing the same URL again still finds the row.

The downgrade writes each URL back into `address` and drops the two columns.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

from engine import vault

revision = "0023_webhook_urls_sealed"
down_revision = "0022_subscriber_link_tokens"
branch_labels = None
depends_on = None

#: SQLite rebuilds a table to drop a column: keep its ids never reused (migration 0007).
_KEEP_IDS = {"sqlite_autoincrement": True}
#: Rows updated per statement (executemany).
_BATCH = 1000
#: engine.subscribers.WEBHOOK_URL, as it is today (a migration keeps its own copies).
_COLUMN = "subscribers.webhook_url"

_SUBSCRIBERS = sa.table(
    "subscribers",
    sa.column("id", sa.Integer),
    sa.column("page_id", sa.Integer),
    sa.column("channel", sa.String),
    sa.column("address", sa.String),
    sa.column("webhook_url", sa.Text),
    sa.column("webhook_host", sa.String),
)


def _lookup(page_id: int, url: str) -> str:
    # engine.subscribers._lookup, as it is today.
    return f"beacon/subscriber/webhook-url:{page_id}:{url}"


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def _update(conn: sa.Connection, rows: list[dict[str, object]], **columns: str) -> None:
    """One UPDATE per batch of rows, setting each `columns` key from the row's value."""
    statement = (
        _SUBSCRIBERS.update()
        .where(_SUBSCRIBERS.c.id == sa.bindparam("row_id"))
        .values({name: sa.bindparam(key) for name, key in columns.items()})
    )
    for start in range(0, len(rows), _BATCH):
        conn.execute(statement, rows[start : start + _BATCH])


def _webhooks(conn: sa.Connection, *columns: sa.ColumnClause[object]) -> list[sa.Row[object]]:
    return list(
        conn.execute(
            sa.select(_SUBSCRIBERS.c.id, *columns).where(_SUBSCRIBERS.c.channel == "webhook")
        )
    )


def upgrade() -> None:
    conn = op.get_bind()
    ring = vault.of(conn)
    # Columns added at the end need no rebuild of the table, on SQLite either.
    op.add_column("subscribers", sa.Column("webhook_url", sa.Text, nullable=True))
    op.add_column("subscribers", sa.Column("webhook_host", sa.String(2048), nullable=True))
    rows = [
        {
            "row_id": row.id,
            "v_address": ring.lookup(_lookup(row.page_id, row.address)),
            "v_url": ring.seal(row.address, _COLUMN),
            "v_host": _host(row.address),
        }
        for row in _webhooks(conn, _SUBSCRIBERS.c.page_id, _SUBSCRIBERS.c.address)
    ]
    _update(conn, rows, address="v_address", webhook_url="v_url", webhook_host="v_host")


def downgrade() -> None:
    conn = op.get_bind()
    ring = vault.of(conn)
    rows = [
        {"row_id": row.id, "v_address": ring.reveal(row.webhook_url, _COLUMN)}
        for row in _webhooks(conn, _SUBSCRIBERS.c.webhook_url)
        if row.webhook_url
    ]
    _update(conn, rows, address="v_address")
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch:
        batch.drop_column("webhook_host")
        batch.drop_column("webhook_url")
