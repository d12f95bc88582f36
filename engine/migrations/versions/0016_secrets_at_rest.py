"""secrets at rest: integration keys as keyed digests, read-back secrets encrypted (issue 14)

Revision ID: 0016_secrets_at_rest
Revises: 0015_subscriber_imports
Create Date: 2026-12-07 20:40:00

Every row is converted in the migration's transaction, with the keyring of
`BEACON_SECRET_KEY` (engine.vault): alert sources' integration keys (current and previous)
become digests, so the keys tools already post with keep working; signing secrets, channel
URLs and secrets and webhook subscribers' secrets become ciphertexts.

The downgrade opens every ciphertext again. Digests cannot be turned back into keys: it
leaves each source with an unusable key (its digest), so after a downgrade every source's
key must be rotated and the tools given the new URLs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.tables
from engine import vault

revision = "0016_secrets_at_rest"
down_revision = "0015_subscriber_imports"
branch_labels = None
depends_on = None

_SOURCES = sa.table(
    "alert_sources",
    sa.column("id", sa.Integer),
    sa.column("integration_key", sa.String),
    sa.column("previous_integration_key", sa.String),
    sa.column("key_digest", sa.String),
    sa.column("previous_key_digest", sa.String),
    sa.column("key_hint", sa.String),
    sa.column("signing_secret", sa.Text),
)
_SUBSCRIBERS = sa.table(
    "subscribers", sa.column("id", sa.Integer), sa.column("webhook_secret", sa.Text)
)
_CHANNELS = sa.table(
    "channels", sa.column("id", sa.Integer), sa.column("config", engine.tables.JSONType)
)
# The names engine.sources, engine.subscribers and engine.channels seal them under.
_SIGNING = "alert_sources.signing_secret"
_WEBHOOK = "subscribers.webhook_secret"
_CHANNEL = "channels.config"
_CHANNEL_FIELDS = ("url", "secret")


#: SQLite rebuilds a table to change a column: keep its ids never reused (migration 0007).
_KEEP_IDS = {"sqlite_autoincrement": True}


def _hint(key: str) -> str | None:
    return key[-4:] if len(key) >= 20 else None


def upgrade() -> None:
    conn = op.get_bind()
    ring = vault.of(conn)
    with op.batch_alter_table("alert_sources", table_kwargs=_KEEP_IDS) as batch:
        batch.add_column(sa.Column("key_digest", sa.String(80), nullable=True))
        batch.add_column(sa.Column("key_hint", sa.String(8), nullable=True))
        batch.add_column(sa.Column("previous_key_digest", sa.String(80), nullable=True))
        batch.alter_column(
            "signing_secret", existing_type=sa.String(500), type_=sa.Text(), existing_nullable=True
        )
    for row in conn.execute(sa.select(_SOURCES)).all():
        previous = row.previous_integration_key
        secret = row.signing_secret
        conn.execute(
            _SOURCES.update()
            .where(_SOURCES.c.id == row.id)
            .values(
                key_digest=ring.digest(row.integration_key),
                key_hint=_hint(row.integration_key),
                previous_key_digest=ring.digest(previous) if previous else None,
                signing_secret=ring.seal(secret, _SIGNING) if secret else None,
            )
        )
    with op.batch_alter_table("alert_sources", table_kwargs=_KEEP_IDS) as batch:
        batch.drop_constraint("uq_alert_sources_integration_key", type_="unique")
        batch.drop_constraint("uq_alert_sources_previous_integration_key", type_="unique")
        batch.drop_column("integration_key")
        batch.drop_column("previous_integration_key")
        batch.alter_column("key_digest", existing_type=sa.String(80), nullable=False)
        batch.create_unique_constraint("uq_alert_sources_key_digest", ["key_digest"])
        batch.create_unique_constraint(
            "uq_alert_sources_previous_key_digest", ["previous_key_digest"]
        )

    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch:
        batch.alter_column(
            "webhook_secret", existing_type=sa.String(128), type_=sa.Text(), existing_nullable=True
        )
    for row in conn.execute(
        sa.select(_SUBSCRIBERS).where(_SUBSCRIBERS.c.webhook_secret.is_not(None))
    ).all():
        if not row.webhook_secret.startswith(vault.SEALED):
            conn.execute(
                _SUBSCRIBERS.update()
                .where(_SUBSCRIBERS.c.id == row.id)
                .values(webhook_secret=ring.seal(row.webhook_secret, _WEBHOOK))
            )

    for row in conn.execute(sa.select(_CHANNELS)).all():
        config = dict(row.config or {})
        fields = [
            f
            for f in _CHANNEL_FIELDS
            if isinstance(config.get(f), str) and not config[f].startswith(vault.SEALED)
        ]
        if fields:
            conn.execute(
                _CHANNELS.update()
                .where(_CHANNELS.c.id == row.id)
                .values(config=ring.seal_fields(config, fields, _CHANNEL))
            )


def downgrade() -> None:
    conn = op.get_bind()
    ring = vault.of(conn)
    for row in conn.execute(sa.select(_CHANNELS)).all():
        config = dict(row.config or {})
        opened = ring.reveal_fields(config, _CHANNEL_FIELDS, _CHANNEL)
        if opened != config:
            conn.execute(_CHANNELS.update().where(_CHANNELS.c.id == row.id).values(config=opened))
    for row in conn.execute(
        sa.select(_SUBSCRIBERS).where(_SUBSCRIBERS.c.webhook_secret.is_not(None))
    ).all():
        conn.execute(
            _SUBSCRIBERS.update()
            .where(_SUBSCRIBERS.c.id == row.id)
            .values(webhook_secret=ring.reveal(row.webhook_secret, _WEBHOOK))
        )
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch:
        batch.alter_column(
            "webhook_secret", existing_type=sa.Text(), type_=sa.String(128), existing_nullable=True
        )

    with op.batch_alter_table("alert_sources", table_kwargs=_KEEP_IDS) as batch:
        batch.add_column(sa.Column("integration_key", sa.String(128), nullable=True))
        batch.add_column(sa.Column("previous_integration_key", sa.String(128), nullable=True))
    for row in conn.execute(sa.select(_SOURCES)).all():
        secret = row.signing_secret
        conn.execute(
            _SOURCES.update()
            .where(_SOURCES.c.id == row.id)
            .values(
                # A digest is no key: unusable until the key is rotated (see above).
                integration_key=row.key_digest,
                previous_integration_key=None,
                signing_secret=ring.reveal(secret, _SIGNING) if secret else None,
            )
        )
    with op.batch_alter_table("alert_sources", table_kwargs=_KEEP_IDS) as batch:
        batch.drop_constraint("uq_alert_sources_key_digest", type_="unique")
        batch.drop_constraint("uq_alert_sources_previous_key_digest", type_="unique")
        batch.drop_column("key_digest")
        batch.drop_column("key_hint")
        batch.drop_column("previous_key_digest")
        batch.alter_column("integration_key", existing_type=sa.String(128), nullable=False)
        batch.alter_column(
            "signing_secret", existing_type=sa.Text(), type_=sa.String(500), existing_nullable=True
        )
        batch.create_unique_constraint("uq_alert_sources_integration_key", ["integration_key"])
        batch.create_unique_constraint(
            "uq_alert_sources_previous_integration_key", ["previous_integration_key"]
        )
