"""Deliveries the intake refused: kept per alert source so an operator can find them.

A tool that gets a 404 or a 400 rarely tells anyone; the operator sees only that nothing
arrives. Each refusal (a 4xx other than 429: a wrong or disabled key, an unreadable body,
a bad signature, a body too large) is recorded with its status and reason, the last `KEEP`
per source, and shown by `beacon events tail` and the sources API. A key that names no
source is recorded without one (admins see those), with its first characters to recognise
it: never the whole key.

Recording is best-effort and bounded: at most `PER_SECOND` a second per source and process,
so a flood of junk costs the store little; what is not recorded is only counted in the log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import vault
from .tables import alert_sources, rejected_deliveries

#: Refusals kept per source (and for keys that name none).
KEEP = 100
#: Refusals recorded per source, process and second.
PER_SECOND = 5
#: Characters of an unknown key kept to recognise it.
KEY_HINT = 4


@dataclass(frozen=True)
class Refusal:
    """One refused delivery, as the intake saw it."""

    at: datetime
    status: int
    reason: str
    method: str
    content_type: str | None
    bytes: int
    user_agent: str | None
    client: str | None


class Throttle:
    """At most `PER_SECOND` recordings per source and second, in this process."""

    def __init__(self, per_second: int = PER_SECOND) -> None:
        self.per_second = per_second
        self.lock = threading.Lock()
        self.second = 0
        self.counts: dict[int | None, int] = {}
        self.dropped = 0

    def take(self, source_id: int | None) -> bool:
        now = int(time.monotonic())
        with self.lock:
            if now != self.second:
                self.second, self.counts = now, {}
            count = self.counts.get(source_id, 0)
            if count >= self.per_second or len(self.counts) > 10_000:
                self.dropped += 1
                return False
            self.counts[source_id] = count + 1
            return True


def source_for_key(conn: Connection, integration_key: str) -> tuple[int, str] | None:
    """(id, why refused) of the source a refused key belongs to though it was not accepted:
    a disabled source's key, or a previous key whose grace period is over."""
    if not integration_key or len(integration_key) > 128 or "\x00" in integration_key:
        return None
    digests = vault.of(conn).digests(integration_key)
    row = conn.execute(
        sa.select(
            alert_sources.c.id,
            alert_sources.c.enabled,
            alert_sources.c.key_digest,
            alert_sources.c.previous_key_expires_at,
        ).where(
            sa.or_(
                alert_sources.c.key_digest.in_(digests),
                alert_sources.c.previous_key_digest.in_(digests),
            )
        )
    ).first()
    if row is None:
        return None
    if not row.enabled:
        return row.id, "the alert source is disabled"
    if row.key_digest not in digests:
        return row.id, "a previous key of this source, whose grace period is over"
    return row.id, ""


def record(
    conn: Connection, source_id: int | None, refusal: Refusal, key_hint: str | None = None
) -> None:
    """Keep `refusal` for `source_id` (None: no source has the key) and forget what falls
    out of the last `KEEP`."""
    conn.execute(
        rejected_deliveries.insert().values(
            source_id=source_id,
            at=refusal.at,
            status=refusal.status,
            reason=refusal.reason[:2000],
            method=refusal.method[:8],
            content_type=(refusal.content_type or "")[:200] or None,
            bytes=refusal.bytes,
            user_agent=(refusal.user_agent or "")[:200] or None,
            client=(refusal.client or "")[:64] or None,
            key_hint=key_hint[:KEY_HINT] if key_hint and source_id is None else None,
        )
    )
    same = (
        rejected_deliveries.c.source_id.is_(None)
        if source_id is None
        else rejected_deliveries.c.source_id == source_id
    )
    oldest_kept = (
        sa.select(rejected_deliveries.c.id)
        .where(same)
        .order_by(rejected_deliveries.c.id.desc())
        .offset(KEEP - 1)
        .limit(1)
        .scalar_subquery()
    )
    conn.execute(rejected_deliveries.delete().where(same, rejected_deliveries.c.id < oldest_kept))


def recent(
    conn: Connection,
    source_ids: Collection[int] | None,
    *,
    limit: int = KEEP,
    after_id: int = 0,
) -> list[dict[str, Any]]:
    """The newest refusals (newest first) of `source_ids`, or with `None` of keys that named
    no source."""
    same = (
        rejected_deliveries.c.source_id.is_(None)
        if source_ids is None
        else rejected_deliveries.c.source_id.in_(list(source_ids))
    )
    rows = conn.execute(
        sa.select(rejected_deliveries)
        .where(same, rejected_deliveries.c.id > after_id)
        .order_by(rejected_deliveries.c.id.desc())
        .limit(limit)
    ).all()
    return [as_json(row) for row in rows]


def as_json(row: Any) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": str(row.id),
        "at": row.at.isoformat(),
        "status": row.status,
        "reason": row.reason,
        "method": row.method,
        "content_type": row.content_type,
        "bytes": row.bytes,
        "user_agent": row.user_agent,
        "client": row.client,
    }
    if row.source_id is None:
        shown["key_starts_with"] = row.key_hint
    return shown
