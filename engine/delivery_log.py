"""What became of each notification a page's subscribers were sent: who, by which channel,
in which state, why it failed, after how many attempts.

A notification is one step told to one page (`workers.fanout`'s notice: an incident or
maintenance update, a component change, a confirmation), named by its key
(`incident-update:42:page:7`); each subscriber it reached has one `deliveries` row whose
`message` carries that key. Deliveries go with their subscriber when it is removed.
Read-only; authorization is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import SubscriberChannel
from .subscriber_admin import address_contains
from .tables import deliveries, subscribers


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


def _notice() -> Any:
    return deliveries.c.message["notice"].as_string()


@dataclass(frozen=True)
class Notification:
    key: str
    #: What was told: incident-update, maintenance-update, component-update, confirm.
    kind: str
    #: The id of the step (the incident or maintenance update, the service, the subscriber).
    object_id: int | None
    first_at: datetime
    last_at: datetime
    total: int
    by_state: dict[str, int]
    #: The lowest delivery id: pass as `before` to list older notifications.
    cursor: int


def describe(key: str) -> tuple[str, int | None]:
    """The kind and step id a notification key names (`incident-update:42:page:7`)."""
    parts = key.split(":")
    kind = parts[0]
    object_id = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return kind, object_id


def notifications(
    conn: Connection, page_id: int, *, limit: int = 50, before: int | None = None
) -> tuple[list[Notification], int | None]:
    """The page's notifications, newest first, with their deliveries counted by state; and
    the cursor of the next (older) page, or None."""
    notice = _notice()
    first_id = sa.func.min(deliveries.c.id)
    query = (
        sa.select(
            notice.label("notice"),
            first_id.label("first_id"),
            sa.func.min(deliveries.c.created_at).label("first_at"),
            sa.func.max(deliveries.c.updated_at).label("last_at"),
            sa.func.count().label("total"),
            *(
                sa.func.sum(sa.case((deliveries.c.status == s.value, 1), else_=0)).label(s.value)
                for s in DeliveryState
            ),
        )
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(subscribers.c.page_id == page_id)
        .group_by(notice)
    )
    if before is not None:
        query = query.having(first_id < before)
    rows = list(conn.execute(query.order_by(first_id.desc()).limit(limit + 1)))
    out = []
    for row in rows[:limit]:
        kind, object_id = describe(str(row.notice))
        out.append(
            Notification(
                key=str(row.notice),
                kind=kind,
                object_id=object_id,
                first_at=row.first_at,
                last_at=row.last_at,
                total=int(row.total),
                by_state={s.value: int(getattr(row, s.value) or 0) for s in DeliveryState},
                cursor=int(row.first_id),
            )
        )
    more = len(rows) > limit
    return out, out[-1].cursor if more and out else None


@dataclass(frozen=True)
class DeliveryFilter:
    notification: str | None = None
    channel: SubscriberChannel | None = None
    state: DeliveryState | None = None
    #: A substring of the subscriber's address.
    q: str = ""


def entries(
    conn: Connection,
    page_id: int,
    what: DeliveryFilter,
    *,
    limit: int = 100,
    before: int | None = None,
) -> tuple[list[Any], int, int | None]:
    """The page's deliveries matching `what`, newest first (rows with the subscriber's
    channel and address), how many match in all, and the next page's cursor."""
    conditions: list[Any] = [subscribers.c.page_id == page_id]
    if what.notification:
        conditions.append(_notice() == what.notification)
    if what.channel is not None:
        conditions.append(subscribers.c.channel == what.channel.value)
    if what.state is not None:
        conditions.append(deliveries.c.status == what.state.value)
    if what.q.strip():
        conditions.append(address_contains(what.q.strip()))
    joined = deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
    total = conn.execute(
        sa.select(sa.func.count()).select_from(joined).where(*conditions)
    ).scalar_one()
    query = sa.select(
        deliveries.c.id,
        deliveries.c.subscriber_id,
        _notice().label("notification"),
        deliveries.c.status,
        deliveries.c.attempts,
        deliveries.c.last_error,
        deliveries.c.created_at,
        deliveries.c.updated_at,
        deliveries.c.sent_at,
        deliveries.c.next_attempt_at,
        subscribers.c.channel,
        subscribers.c.address,
        subscribers.c.webhook_url,
        subscribers.c.webhook_host,
    ).select_from(joined)
    query = query.where(*conditions)
    if before is not None:
        query = query.where(deliveries.c.id < before)
    rows = list(conn.execute(query.order_by(deliveries.c.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, int(total), rows[-1].id if more and rows else None
