"""subscribers: no link token at rest; links derived from the secret key (engine.subscriber_links)

Revision ID: 0022_subscriber_link_tokens
Revises: 0021_delivery_threads
Create Date: 2026-12-07 23:40:00

Subscribers' confirm and manage/unsubscribe tokens were stored in plain text: a copy of
the database confirmed, read and ended anyone's subscription. Every row gets selectors
(the stored half of the new derived links) and the keyed digest (engine.vault, under
`BEACON_SECRET_KEY`) of the tokens it had, so the links already in inboxes keep working;
the token columns go.

The downgrade puts tokens back: each row's current derived tokens (so links sent since
the upgrade keep working under the old release). The links of messages sent before the
upgrade cannot come back (a digest is no token) and stop working after a downgrade.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

from engine import vault

revision = "0022_subscriber_link_tokens"
down_revision = "0021_delivery_threads"
branch_labels = None
depends_on = None

#: SQLite rebuilds a table to change a column: keep its ids never reused (migration 0007).
_KEEP_IDS = {"sqlite_autoincrement": True}
#: Rows updated per statement (executemany): a store of 100,000 subscribers in seconds.
_BATCH = 1000

_OLD = sa.table(
    "subscribers",
    sa.column("id", sa.Integer),
    sa.column("page_id", sa.Integer),
    sa.column("confirm_token", sa.String),
    sa.column("unsubscribe_token", sa.String),
    sa.column("link_selector", sa.String),
    sa.column("confirm_selector", sa.String),
    sa.column("legacy_link_digest", sa.String),
    sa.column("legacy_confirm_digest", sa.String),
)


def _selector() -> str:
    # engine.subscriber_links.new_selector, as it is today (a migration keeps its own).
    return secrets.token_urlsafe(16)


def _update(conn: sa.Connection, rows: list[dict[str, object]], **columns: str) -> None:
    """One UPDATE per batch of rows, setting each `columns` key from the row's value."""
    statement = (
        _OLD.update()
        .where(_OLD.c.id == sa.bindparam("row_id"))
        .values({name: sa.bindparam(key) for name, key in columns.items()})
    )
    for start in range(0, len(rows), _BATCH):
        conn.execute(statement, rows[start : start + _BATCH])


def upgrade() -> None:
    conn = op.get_bind()
    ring = vault.of(conn)
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch:
        batch.add_column(sa.Column("link_selector", sa.String(32), nullable=True))
        batch.add_column(sa.Column("confirm_selector", sa.String(32), nullable=True))
        batch.add_column(sa.Column("legacy_link_digest", sa.String(80), nullable=True))
        batch.add_column(sa.Column("legacy_confirm_digest", sa.String(80), nullable=True))
    rows = [
        {
            "row_id": row.id,
            "v_link_selector": _selector(),
            "v_legacy_link_digest": ring.digest(row.unsubscribe_token),
            "v_confirm_selector": _selector() if row.confirm_token else None,
            "v_legacy_confirm_digest": ring.digest(row.confirm_token)
            if row.confirm_token
            else None,
        }
        for row in conn.execute(
            sa.select(_OLD.c.id, _OLD.c.unsubscribe_token, _OLD.c.confirm_token)
        )
    ]
    _update(
        conn,
        rows,
        link_selector="v_link_selector",
        legacy_link_digest="v_legacy_link_digest",
        confirm_selector="v_confirm_selector",
        legacy_confirm_digest="v_legacy_confirm_digest",
    )
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch:
        batch.drop_constraint("uq_subscribers_confirm_token", type_="unique")
        batch.drop_constraint("uq_subscribers_unsubscribe_token", type_="unique")
        batch.drop_column("confirm_token")
        batch.drop_column("unsubscribe_token")
        batch.alter_column("link_selector", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_subscribers_link_selector", ["link_selector"])
        batch.create_unique_constraint("uq_subscribers_confirm_selector", ["confirm_selector"])
        batch.create_unique_constraint(
            "uq_subscribers_legacy_link_digest", ["legacy_link_digest"]
        )
        batch.create_unique_constraint(
            "uq_subscribers_legacy_confirm_digest", ["legacy_confirm_digest"]
        )


def downgrade() -> None:
    # The tokens the derived links carry now (engine.subscriber_links.make), written as
    # the old release keeps them. The migration keeps its own copy of the formula.
    conn = op.get_bind()
    ring = vault.of(conn)

    def token(purpose: str, page_id: int, subscriber_id: int, selector: str) -> str:
        message = f"beacon/subscriber/{purpose}:{page_id}:{subscriber_id}:{selector}"
        return selector + ring.derive(message)[:32]

    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch:
        batch.add_column(sa.Column("confirm_token", sa.String(64), nullable=True))
        batch.add_column(sa.Column("unsubscribe_token", sa.String(64), nullable=True))
    rows = [
        {
            "row_id": row.id,
            "v_unsubscribe": token("link", row.page_id, row.id, row.link_selector),
            "v_confirm": token("confirm", row.page_id, row.id, row.confirm_selector)
            if row.confirm_selector
            else None,
        }
        for row in conn.execute(
            sa.select(_OLD.c.id, _OLD.c.page_id, _OLD.c.link_selector, _OLD.c.confirm_selector)
        )
    ]
    _update(conn, rows, unsubscribe_token="v_unsubscribe", confirm_token="v_confirm")
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch:
        batch.drop_constraint("uq_subscribers_link_selector", type_="unique")
        batch.drop_constraint("uq_subscribers_confirm_selector", type_="unique")
        batch.drop_constraint("uq_subscribers_legacy_link_digest", type_="unique")
        batch.drop_constraint("uq_subscribers_legacy_confirm_digest", type_="unique")
        batch.drop_column("link_selector")
        batch.drop_column("confirm_selector")
        batch.drop_column("legacy_link_digest")
        batch.drop_column("legacy_confirm_digest")
        batch.alter_column("unsubscribe_token", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_subscribers_confirm_token", ["confirm_token"])
        batch.create_unique_constraint(
            "uq_subscribers_unsubscribe_token", ["unsubscribe_token"]
        )
