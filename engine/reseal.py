"""After a change of `BEACON_SECRET_KEY`: every encrypted secret sealed again under the new
key, and the integration keys still digested under an old one counted (`beacon db reseal`).

Encrypted values can be re-encrypted at once; an integration key's digest cannot be remade
without the key, which only the tool that posts it has. The intake moves a key's digest to
the current secret key the first time the key is used (`engine.sources.redigest`); a source
whose tool never posts keeps the old digest until its key is rotated.

Webhook subscribers' URLs are sealed, and the digest that finds each (its `address`) is
made again from the URL under the new key.

Subscribers' links are made from the secret key (engine.subscriber_links): nothing of them
is stored to seal again, and the links in messages sent before the change work while the
previous key is listed. Those sent before migration 0022 are found by a digest under the
key of their day, counted here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import vault
from .channels import SEALED_FIELDS
from .models import SubscriberChannel
from .sources import SIGNING_SECRET
from .subscribers import WEBHOOK_SECRET, webhook_columns, webhook_url
from .tables import alert_sources, channels, subscribers

_CHANNEL = "channels.config"


@dataclass(frozen=True)
class Resealed:
    """How many values were sealed again, and how many sources' keys still need the
    previous secret key (their digests are under it)."""

    sealed: int
    stale_digests: int
    #: Subscribers whose links from before migration 0022 are digested under a previous key.
    stale_links: int = 0


def reseal(conn: Connection) -> Resealed:
    """Seal every encrypted value (and any left in plain text) under the current key."""
    ring = vault.of(conn)
    sealed = 0
    for row in conn.execute(
        sa.select(alert_sources.c.id, alert_sources.c.signing_secret).where(
            alert_sources.c.signing_secret.is_not(None)
        )
    ).all():
        if not ring.is_sealed_current(row.signing_secret):
            value = ring.seal(ring.reveal(row.signing_secret, SIGNING_SECRET), SIGNING_SECRET)
            conn.execute(
                alert_sources.update()
                .where(alert_sources.c.id == row.id)
                .values(signing_secret=value)
            )
            sealed += 1
    for row in conn.execute(
        sa.select(subscribers.c.id, subscribers.c.webhook_secret).where(
            subscribers.c.webhook_secret.is_not(None)
        )
    ).all():
        if not ring.is_sealed_current(row.webhook_secret):
            value = ring.seal(ring.reveal(row.webhook_secret, WEBHOOK_SECRET), WEBHOOK_SECRET)
            conn.execute(
                subscribers.update().where(subscribers.c.id == row.id).values(webhook_secret=value)
            )
            sealed += 1
    sealed += _reseal_webhook_urls(conn, ring)
    for row in conn.execute(sa.select(channels.c.id, channels.c.config)).all():
        config = dict(row.config or {})
        stale = [
            f
            for f in SEALED_FIELDS
            if isinstance(config.get(f), str) and not ring.is_sealed_current(config[f])
        ]
        if stale:
            opened = ring.reveal_fields(config, stale, _CHANNEL)
            conn.execute(
                channels.update()
                .where(channels.c.id == row.id)
                .values(config=ring.seal_fields(opened, stale, _CHANNEL))
            )
            sealed += len(stale)
    current = ring.current_id + ":"
    stale_digests = conn.execute(
        sa.select(sa.func.count()).where(
            sa.or_(
                sa.not_(alert_sources.c.key_digest.startswith(current)),
                sa.and_(
                    alert_sources.c.previous_key_digest.is_not(None),
                    sa.not_(alert_sources.c.previous_key_digest.startswith(current)),
                ),
            )
        )
    ).scalar_one()
    stale_links = conn.execute(
        sa.select(sa.func.count()).where(
            sa.or_(
                *(
                    sa.and_(column.is_not(None), sa.not_(column.startswith(current)))
                    for column in (
                        subscribers.c.legacy_link_digest,
                        subscribers.c.legacy_confirm_digest,
                    )
                )
            )
        )
    ).scalar_one()
    return Resealed(sealed, int(stale_digests), int(stale_links))


def _reseal_webhook_urls(conn: Connection, ring: vault.Keyring) -> int:
    """Webhook subscribers' URLs sealed again, and their lookup digests (their `address`)
    made again, under the current key. Unlike an integration key's digest, this one can
    be remade: the URL it digests is sealed beside it. A row still holding its URL in plain
    text (one no migration reached) is sealed too."""
    done = 0
    current = ring.current_id + ":"
    for row in conn.execute(
        sa.select(
            subscribers.c.id,
            subscribers.c.page_id,
            subscribers.c.address,
            subscribers.c.webhook_url,
        ).where(subscribers.c.channel == SubscriberChannel.WEBHOOK.value)
    ).all():
        if (
            row.webhook_url
            and ring.is_sealed_current(row.webhook_url)
            and row.address.startswith(current)
        ):
            continue
        values = webhook_columns(ring, row.page_id, webhook_url(ring, row))
        conn.execute(subscribers.update().where(subscribers.c.id == row.id).values(**values))
        done += 1
    return done
