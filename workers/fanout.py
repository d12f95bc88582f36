"""Tell a page's subscribers: incident and maintenance updates, component changes, and the
confirmation message of a new email or SMS subscription.

Outbox kinds (payloads): `notify.incident_update` {"update_id"}, `notify.maintenance_update`
{"update_id"}, `notify.component_update` {"cause_kind", "at", "changes": [[service id, old,
new]]}, `notify.subscriber_confirm` {"subscriber_id", "nonce"}.

One handler run turns each payload into *notices* (one per page that shows the change),
expands every notice into `deliveries` rows in batches (`INSERT ... ON CONFLICT DO NOTHING`
on a deterministic dedup key, so running twice adds nothing) and then sends the pending ones
from a small thread pool: no RQ job per subscriber. A delivery is sent only by whoever moves
it from pending to sending ("mark sending if pending", per batch, with RETURNING), so a
repeated or concurrent run never sends twice. A temporary failure puts the delivery back to
pending and makes the handler raise, so the outbox retries the whole payload with its backoff
(and only the pending deliveries go out again); a permanent one marks it failed and disables
the subscriber with the reason.

Who hears what: incident and maintenance updates go to every subscriber following one of the
affected services on the page; component changes go to webhook subscribers always, and to
people (email, SMS, private-page users) only when no incident or maintenance update already
tells them (a rule, an override or its expiry changed the status).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from adapters.channels import ChannelError, Context, Message, get_channel
from engine import subscribers as subs
from engine.incidents import NOTIFY_UPDATE as INCIDENT_UPDATE
from engine.maintenance import NOTIFY_UPDATE as MAINTENANCE_UPDATE
from engine.models import SubscriberChannel
from engine.runtime import Runtime
from engine.status import NOTIFY_COMPONENTS as COMPONENT_UPDATE
from engine.tables import deliveries, subscribers, users, utcnow

from . import messages
from .messages.notices import (
    Notice,
    component_notices,
    confirm_notices,
    incident_notices,
    iso,
    maintenance_notices,
)
from .notify import DeliveryRetry, channel_module, claimable, context, insert_ignore

log = logging.getLogger(__name__)

SUBSCRIBER_CONFIRM = subs.CONFIRM
__all__ = [
    "COMPONENT_UPDATE",
    "INCIDENT_UPDATE",
    "MAINTENANCE_UPDATE",
    "SUBSCRIBER_CONFIRM",
    "handle_component_update",
    "handle_incident_update",
    "handle_maintenance_update",
    "handle_subscriber_confirm",
]
#: Subscribers read and delivery rows written per transaction while expanding.
EXPAND_BATCH = 500
#: Deliveries claimed (and their outcomes recorded) per transaction while sending.
SEND_BATCH = 100
#: Concurrent sends: providers answer in 50-500 ms, so sending one by one would make a page
#: with thousands of subscribers wait minutes.
SEND_THREADS = 8
DELIVERY_KIND = "subscriber"
# --- handlers -------------------------------------------------------------------------------


def handle_incident_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about incident updates with `deliver_notifications`."""
    ids = sorted({int(p["update_id"]) for p in payloads})
    with rt.store.read() as conn:
        notices = [n for i in ids for n in incident_notices(conn, rt.settings, i)]
    deliver(rt, notices)


def handle_maintenance_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about the steps of maintenance windows with `notify`."""
    ids = sorted({int(p["update_id"]) for p in payloads})
    with rt.store.read() as conn:
        notices = [n for i in ids for n in maintenance_notices(conn, rt.settings, i)]
    deliver(rt, notices)


def handle_component_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about component status changes on active pages."""
    with rt.store.read() as conn:
        notices = [n for p in payloads for n in component_notices(conn, rt.settings, p)]
    deliver(rt, notices)


def handle_subscriber_confirm(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Send the double opt-in message to new email and SMS subscribers."""
    with rt.store.read() as conn:
        notices = [n for p in payloads for n in confirm_notices(conn, rt.settings, p)]
    deliver(rt, notices)


def deliver(rt: Runtime, notices: Sequence[Notice]) -> None:
    """Expand and send every notice; raises `DeliveryRetry` if some sends failed for now."""
    ctx = context(rt.settings)
    retry: list[str] = []
    for notice in notices:
        expand(rt, notice)
        retry += send_pending(rt, notice, ctx)
    if retry:
        raise DeliveryRetry(f"{len(retry)} deliveries failed for now: {'; '.join(retry[:3])}")


# --- expanding --------------------------------------------------------------------------------


def _wanted(notice: Notice, row: Any) -> bool:
    if notice.only is not None:
        return row.id in notice.only
    if not notice.people and row.channel != SubscriberChannel.WEBHOOK:
        return False
    return subs.follows(row.services, notice.service_keys)


def expand(rt: Runtime, notice: Notice) -> int:
    """Create the notice's delivery rows (idempotent); returns how many subscribers it has."""
    count, after = 0, 0
    while True:
        with rt.store.begin() as conn:
            if notice.only is not None:
                batch = list(
                    conn.execute(sa.select(subscribers).where(subscribers.c.id.in_(notice.only)))
                )
            else:
                batch = subs.recipients(conn, notice.page.id, after_id=after, limit=EXPAND_BATCH)
            now = utcnow()
            rows = [
                {
                    "dedup_key": f"{notice.key}:subscriber:{r.id}",
                    "subscriber_id": r.id,
                    "kind": DELIVERY_KIND,
                    "message": {"notice": notice.key, "channel": r.channel},
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for r in batch
                if _wanted(notice, r)
            ]
            insert_ignore(conn, rows)
        count += len(rows)
        if notice.only is not None or len(batch) < EXPAND_BATCH:
            return count
        after = batch[-1].id


# --- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    subscriber_id: int
    error: str | None = None
    permanent: bool = False

    @property
    def sent(self) -> bool:
        return self.error is None


def _pending_ids(rt: Runtime, notice: Notice, now: datetime) -> list[int]:
    prefix = f"{notice.key}:subscriber:"
    with rt.store.read() as conn:
        return list(
            conn.execute(
                sa.select(deliveries.c.id)
                .where(deliveries.c.dedup_key.startswith(prefix, autoescape=True))
                .where(claimable(now))
                .order_by(deliveries.c.id)
            ).scalars()
        )


def _claim(rt: Runtime, ids: list[int]) -> list[Any]:
    """Move the still-claimable deliveries among `ids` to `sending`; returns them with their
    subscribers. Whoever's UPDATE moves a row is the one who sends it."""
    now = utcnow()  # per batch: the lease runs from this claim, not from the run's start
    with rt.store.begin() as conn:
        claimed = list(
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids))
                .where(claimable(now))
                .values(status="sending", attempts=deliveries.c.attempts + 1, updated_at=now)
                .returning(deliveries.c.id)
            ).scalars()
        )
        if not claimed:
            return []
        return list(
            conn.execute(
                sa.select(
                    deliveries.c.id.label("delivery_id"),
                    subscribers,
                    users.c.email.label("user_email"),
                )
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .outerjoin(users, users.c.id == subscribers.c.user_id)
                .where(deliveries.c.id.in_(claimed))
            )
        )


def send_pending(rt: Runtime, notice: Notice, ctx: Context) -> list[str]:
    """Send the notice's claimable deliveries; returns the temporary failures' messages."""
    ids = _pending_ids(rt, notice, utcnow())
    temporary: list[str] = []
    if not ids:
        return temporary
    with ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="beacon-fanout") as pool:
        for start in range(0, len(ids), SEND_BATCH):
            rows = _claim(rt, ids[start : start + SEND_BATCH])
            outcomes = list(pool.map(lambda r: send_one(rt, notice, r, ctx), rows))
            _record(rt, outcomes)
            temporary += [
                f"{o.delivery_id}: {o.error}" for o in outcomes if o.error and not o.permanent
            ]
    return temporary


def _record(rt: Runtime, outcomes: list[Outcome]) -> None:
    """Write a batch's outcomes in one transaction (only over rows still `sending`)."""
    if not outcomes:
        return
    now = utcnow()
    sending = deliveries.c.status == "sending"
    with rt.store.begin() as conn:
        sent = [o.delivery_id for o in outcomes if o.sent]
        if sent:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(sent), sending)
                .values(status="sent", sent_at=now, last_error=None, updated_at=now)
            )
        for o in outcomes:
            if o.sent:
                continue
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == o.delivery_id, sending)
                .values(
                    status="failed" if o.permanent else "pending",
                    last_error=(o.error or "")[:2000],
                    updated_at=now,
                )
            )
            if o.permanent:
                subs.disable(conn, o.subscriber_id, o.error or "permanent failure")
                log.warning("subscriber %s disabled: %s", o.subscriber_id, o.error)


def send_one(rt: Runtime, notice: Notice, row: Any, ctx: Context) -> Outcome:
    """Send one delivery; never raises (the outcome says what happened)."""
    try:
        kind, target, message = build(rt, notice, row, ctx)
        get_channel(kind).send(message, target, ctx)
    except ChannelError as exc:
        return Outcome(row.delivery_id, row.id, str(exc), exc.permanent)
    except Exception as exc:  # a bug must not lose the batch's other outcomes; retried later
        log.exception("delivery %s to subscriber %s failed", row.delivery_id, row.id)
        return Outcome(row.delivery_id, row.id, f"internal error: {exc!r}", False)
    return Outcome(row.delivery_id, row.id)


def build(
    rt: Runtime, notice: Notice, row: Any, ctx: Context
) -> tuple[str, dict[str, Any], Message]:
    """The channel module, target and message for one subscriber."""
    unsubscribe_url = f"{notice.page_url}/subscriptions/unsubscribe/{row.unsubscribe_token}"
    values = {
        **notice.context,
        "page": {"name": notice.page.name, "url": f"{notice.page_url}/"},
    }
    if notice.kind != "confirm":
        values["unsubscribe_url"] = unsubscribe_url
    channel = SubscriberChannel(row.channel)
    if channel == SubscriberChannel.WEBHOOK:
        body = {
            "meta": {
                "unsubscribe": unsubscribe_url,
                "documentation": f"{notice.page_url}/#subscribe",
                "generated_at": iso(utcnow()),
            },
            **notice.envelope,
        }
        target = {"url": row.address, "secret": row.webhook_secret}
        # One webhook-id per delivery: the same on every attempt, so receivers deduplicate.
        message = Message(subject="", text="", payload=body, id=f"msg_{row.delivery_id}")
        return "webhook", target, message
    if channel == SubscriberChannel.SMS:
        return (
            "sms",
            {"address": row.address},
            Message(subject="", text=messages.sms(notice.kind, values)),
        )
    address = row.address
    if channel == SubscriberChannel.USER:
        with rt.store.read() as conn:
            member = subs.is_member(conn, notice.page, row.user_id)
        if not member or not row.user_email:
            raise ChannelError("the user is no longer a member of the page's teams", permanent=True)
        address = row.user_email
    mail = messages.email(notice.kind, values)
    headers = {}
    if notice.kind != "confirm":
        # RFC 8058 one-click: mail clients POST "List-Unsubscribe=One-Click" to the URL.
        headers = {
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    message = Message(subject=mail.subject, text=mail.text, html=mail.html, headers=headers)
    return channel_module("email", ctx), {"address": address}, message
