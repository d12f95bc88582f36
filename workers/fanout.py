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
repeated or concurrent run never sends twice; while it sends a batch, the run renews the
batch's lease.

Retries are per delivery and count real send attempts, not claims (a queue outage uses none
of them): a temporary failure puts the delivery back to pending with `next_attempt_at` (its
backoff, or the provider's `Retry-After` when longer) and schedules a `notify.resume`
deadline for the notice, which rebuilds it from its source and sends what is due; after
`MAX_ATTEMPTS` it is failed. A permanent failure fails the delivery, and `DISABLE_AFTER` of
them in a row disable the subscriber with the reason. The `notify.sweep` deadline, every
minute, resumes notices whose deliveries were left behind (pending past their time, or
`sending` past their lease because their worker died).

Who hears what: incident and maintenance updates go to every subscriber following one of the
affected services on the page; component changes go to webhook subscribers always, and to
people (email, SMS, private-page users) only when no incident or maintenance update already
tells them (a rule, an override or its expiry changed the status).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa
from markupsafe import Markup

from adapters.channels import (
    ChannelError,
    Context,
    Message,
    get_channel,
    outbound,
    sendgrid_email,
    webhook,
)
from engine import deadlines
from engine import subscriber_links as links
from engine import subscribers as subs
from engine.incidents import NOTIFY_UPDATE as INCIDENT_UPDATE
from engine.maintenance import NOTIFY_UPDATE as MAINTENANCE_UPDATE
from engine.models import SubscriberChannel
from engine.runtime import Runtime, current
from engine.status import NOTIFY_COMPONENTS as COMPONENT_UPDATE
from engine.tables import deliveries, subscribers, users, utcnow

from . import coalesce, messages
from .lease import renewing
from .messages.notices import (
    Notice,
    component_notices,
    confirm_notices,
    incident_notices,
    iso,
    maintenance_notices,
)
from .notify import SENDING_LEASE, channel_module, claimable, context, insert_ignore

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
    "handle_chunk",
    "handle_resume",
    "handle_subscriber_confirm",
    "handle_sweep",
]
#: Subscribers read and delivery rows written per transaction while expanding.
EXPAND_BATCH = 2000
#: Deliveries claimed (and their outcomes recorded) per transaction while sending: one
#: SendGrid request's worth of email.
SEND_BATCH = 1000
#: Concurrent sends: providers answer in 50-500 ms, so sending one by one would make a page
#: with thousands of subscribers wait minutes.
SEND_THREADS = 8
DELIVERY_KIND = "subscriber"
#: Deliveries per share of a large fan-out: ten SendGrid requests' worth. 100,000
#: subscribers make 10 jobs that every worker takes part in.
CHUNK = 10_000
NOTIFY_QUEUE = "beacon-notify"
CHUNK_DEADLINE = "notify.chunk"
#: Real send attempts of one delivery before it is given up on.
MAX_ATTEMPTS = 8
#: Permanent failures in a row that disable a subscriber.
DISABLE_AFTER = 3
#: How often a run renews the lease of the batch it is sending.
LEASE_RENEW_EVERY = SENDING_LEASE.total_seconds() / 4
#: Deadline kinds (the outbox kinds are `deadline.<kind>`).
RESUME = "notify.resume"
SWEEP = "notify.sweep"
SWEEP_KEY = "deliveries"
SWEEP_EVERY = timedelta(minutes=1)
#: Deliveries the sweeper looks at per pass.
SWEEP_LIMIT = 20_000
# --- handlers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The outbox work a notice comes from: what a resume runs again to rebuild it."""

    kind: str
    payload: dict[str, Any]


def handle_incident_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about incident updates with `deliver_notifications`."""
    for update_id in sorted({int(p["update_id"]) for p in payloads}):
        with rt.store.read() as conn:
            notices = incident_notices(conn, rt.settings, update_id)
        deliver(rt, Source(INCIDENT_UPDATE, {"update_id": update_id}), notices)


def handle_maintenance_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about the steps of maintenance windows with `notify`."""
    for update_id in sorted({int(p["update_id"]) for p in payloads}):
        with rt.store.read() as conn:
            notices = maintenance_notices(conn, rt.settings, update_id)
        deliver(rt, Source(MAINTENANCE_UPDATE, {"update_id": update_id}), notices)


def handle_component_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about component status changes on active pages."""
    for payload in payloads:
        with rt.store.read() as conn:
            notices = component_notices(conn, rt.settings, payload)
        deliver(rt, Source(COMPONENT_UPDATE, _plain(payload)), notices)


def handle_subscriber_confirm(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Send the double opt-in message to new email and SMS subscribers."""
    for payload in payloads:
        with rt.store.read() as conn:
            notices = confirm_notices(conn, rt.settings, payload)
        deliver(rt, Source(SUBSCRIBER_CONFIRM, _plain(payload)), notices)


def _plain(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without what a fired deadline adds to it."""
    return {k: v for k, v in payload.items() if k not in ("deadline_key", "due_at")}


def notices_of(conn: Any, settings: Any, source: Source) -> list[Notice]:
    """The notices a source makes (what a chunk job rebuilds)."""
    payload = source.payload
    if source.kind == INCIDENT_UPDATE:
        return incident_notices(conn, settings, int(payload["update_id"]))
    if source.kind == MAINTENANCE_UPDATE:
        return maintenance_notices(conn, settings, int(payload["update_id"]))
    if source.kind == COMPONENT_UPDATE:
        return component_notices(conn, settings, payload)
    if source.kind == SUBSCRIBER_CONFIRM:
        return confirm_notices(conn, settings, payload)
    raise ValueError(f"no notices for kind {source.kind!r}")


#: What a resume runs again, by the kind of its source.
_HANDLERS: dict[str, Callable[[Runtime, list[dict[str, Any]]], None]] = {
    INCIDENT_UPDATE: handle_incident_update,
    MAINTENANCE_UPDATE: handle_maintenance_update,
    COMPONENT_UPDATE: handle_component_update,
    SUBSCRIBER_CONFIRM: handle_subscriber_confirm,
}


def handle_resume(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Deadline `notify.resume`: a notice has deliveries due again (after a temporary failure,
    or found by the sweeper); rebuild it from its source and send what is claimable."""
    for payload in payloads:
        handler = _HANDLERS.get(str(payload.get("kind")))
        if handler is None:
            log.error("cannot resume notifications of kind %r", payload.get("kind"))
            continue
        handler(rt, [dict(payload.get("payload") or {})])


def handle_sweep(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Deadline `notify.sweep`, every `SWEEP_EVERY`: deliveries that nobody is going to send
    (pending past their time, or `sending` past their lease: their worker died) get their
    notice resumed. Then the next sweep is scheduled, `SWEEP_EVERY` after the one that ran
    (its due time, or now if later): a clock that fires deadlines ahead of the wall clock,
    as a test's does, sees the sweep come once a minute of its time, not without end."""
    now = utcnow()
    fired_for = [datetime.fromisoformat(p["due_at"]) for p in payloads if p.get("due_at")]
    ran_for = max([now, *(d if d.tzinfo else d.replace(tzinfo=UTC) for d in fired_for)])
    stale = now - SENDING_LEASE
    due = sa.or_(
        sa.and_(
            deliveries.c.status == "pending",
            sa.or_(
                deliveries.c.next_attempt_at <= now,
                sa.and_(deliveries.c.next_attempt_at.is_(None), deliveries.c.updated_at < stale),
            ),
        ),
        sa.and_(deliveries.c.status == "sending", deliveries.c.updated_at < stale),
    )
    with rt.store.read() as conn:
        found: dict[str, dict[str, Any]] = {}
        for (message,) in conn.execute(
            sa.select(deliveries.c.message)
            .where(deliveries.c.kind == DELIVERY_KIND, due)
            .limit(SWEEP_LIMIT)
        ):
            if message.get("source") and message.get("notice"):
                found.setdefault(message["notice"], message["source"])
    with rt.store.begin() as conn:
        for key, source in found.items():
            if deadlines.get(conn, RESUME, key) is None:
                deadlines.schedule(conn, RESUME, key, now, source)
        deadlines.schedule(conn, SWEEP, SWEEP_KEY, ran_for + SWEEP_EVERY)
    if found:
        log.warning("resuming %d notices with deliveries left behind", len(found))


def deliver(rt: Runtime, source: Source, notices: Sequence[Notice]) -> None:
    """Expand and send every notice; deliveries that failed for now are resumed when due
    (a `notify.resume` deadline per notice, at the earliest retry time). A notice with more
    than `CHUNK` subscribers is shared out by subscriber ranges (`_share_out`)."""
    for notice in notices:
        ranges = _ranges(rt, notice)
        if len(ranges) > 1:
            ranges = _share_out(rt, notice, source, ranges)
        for after, upto in ranges:
            _run_range(rt, notice, source, after, upto)
    _ensure_sweep(rt)


def _run_range(rt: Runtime, notice: Notice, source: Source, after: int, upto: int | None) -> None:
    """Expand and send the notice for its subscribers with ids in (`after`, `upto`]."""
    expand(rt, notice, source, after=after, upto=upto)
    ids = _pending_ids(rt, notice, utcnow(), after=after, upto=upto)
    send_pending(rt, notice, context(rt.settings), ids=ids)
    # The earliest retry of every delivery of the range still waiting, not only of those
    # that failed in this run: a resume sends only what is due, and deliveries that failed
    # a moment later (a later batch, a longer Retry-After) would otherwise wait for the
    # sweeper's next pass.
    retry_at = _next_attempt(rt, notice, after=after, upto=upto)
    if retry_at is not None:
        _resume_at(rt, notice.key, source, retry_at)


def _next_attempt(rt: Runtime, notice: Notice, *, after: int, upto: int | None) -> datetime | None:
    """When the earliest of the notice's deliveries waiting for a retry, to subscribers with
    ids in (`after`, `upto`], is due (None: none waits)."""
    query = (
        sa.select(sa.func.min(deliveries.c.next_attempt_at))
        .where(deliveries.c.dedup_key.startswith(f"{notice.key}:subscriber:", autoescape=True))
        .where(deliveries.c.status == "pending")
        .where(deliveries.c.subscriber_id > after)
    )
    if upto is not None:
        query = query.where(deliveries.c.subscriber_id <= upto)
    with rt.store.read() as conn:
        at = conn.execute(query).scalar()
    if at is not None and at.tzinfo is None:  # SQLite hands back naive UTC
        at = at.replace(tzinfo=UTC)
    return at


def _ranges(rt: Runtime, notice: Notice) -> list[tuple[int, int | None]]:
    """The notice's subscribers as ranges of ids of about `CHUNK` each: (after, upto]."""
    if notice.only is not None:
        return [(0, None)]
    query = (
        sa.select(subscribers.c.id)
        .where(subscribers.c.page_id == notice.page.id)
        .where(subscribers.c.confirmed.is_(True))
        .where(subscribers.c.disabled_reason.is_(None))
        .order_by(subscribers.c.id)
    )
    if not notice.people:
        query = query.where(subscribers.c.channel == SubscriberChannel.WEBHOOK.value)
    with rt.store.read() as conn:
        ids = list(conn.execute(query).scalars())
    bounds = ids[CHUNK - 1 : -1 : CHUNK]
    if not bounds:
        return [(0, None)]
    return list(zip([0, *bounds], [*bounds, None], strict=True))


def _share_out(
    rt: Runtime, notice: Notice, source: Source, ranges: list[tuple[int, int | None]]
) -> list[tuple[int, int | None]]:
    """Hand all but the first range to `run_chunk` jobs, so that every worker expands and
    sends a share; returns the ranges this run does. Each share is also a `notify.chunk`
    deadline a lease away (its job cancels it when done): a job lost with Redis is run from
    the outbox then. When the queue is away this run does them all."""
    now = utcnow()
    specs = [
        {
            "kind": source.kind,
            "payload": source.payload,
            "notice": notice.key,
            "after": after,
            "upto": upto,
        }
        for after, upto in ranges[1:]
    ]
    with rt.store.begin() as conn:
        for spec in specs:
            deadlines.schedule(conn, CHUNK_DEADLINE, _chunk_key(spec), now + SENDING_LEASE, spec)
    try:
        for spec in specs:
            rt.queues.enqueue(
                NOTIFY_QUEUE,
                "workers.fanout.run_chunk",
                spec,
                job_id=f"fanout-{_chunk_key(spec)}",
                result_ttl=0,
                failure_ttl=86400,
            )
    except redis.RedisError as exc:
        log.warning("could not share out %s (%s); doing it all here", notice.key, exc)
        return ranges
    return ranges[:1]


def _chunk_key(spec: dict[str, Any]) -> str:
    return f"{spec['notice']}:after:{spec['after']}"


def run_chunk(spec: dict[str, Any]) -> None:
    """RQ job: expand and send one share of a large fan-out (`_share_out`), then cancel its
    deadline. Idempotent like every send: rows are inserted once, claims are conditional."""
    rt = current()
    _run_chunk(rt, spec)
    with rt.store.begin() as conn:
        deadlines.cancel(conn, CHUNK_DEADLINE, _chunk_key(spec))


def handle_chunk(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Deadline `notify.chunk`: a share whose job did not finish within a lease (lost with
    Redis, or its worker died) runs from the outbox."""
    for payload in payloads:
        _run_chunk(rt, _plain(payload))


def _run_chunk(rt: Runtime, spec: dict[str, Any]) -> None:
    source = Source(str(spec["kind"]), dict(spec["payload"]))
    with rt.store.read() as conn:
        notices = [n for n in notices_of(conn, rt.settings, source) if n.key == spec["notice"]]
    upto = spec.get("upto")
    for notice in notices:
        _run_range(rt, notice, source, int(spec["after"]), None if upto is None else int(upto))


def _resume_at(rt: Runtime, key: str, source: Source, at: datetime) -> None:
    with rt.store.begin() as conn:
        pending = deadlines.get(conn, RESUME, key)
        if pending is None or pending.due_at > at:
            deadlines.schedule(
                conn, RESUME, key, at, {"kind": source.kind, "payload": source.payload}
            )


def _ensure_sweep(rt: Runtime) -> None:
    with rt.store.read() as conn:
        if deadlines.get(conn, SWEEP, SWEEP_KEY) is not None:
            return
    with rt.store.begin() as conn:
        if deadlines.get(conn, SWEEP, SWEEP_KEY) is None:
            deadlines.schedule(conn, SWEEP, SWEEP_KEY, utcnow() + SWEEP_EVERY)


# --- expanding --------------------------------------------------------------------------------


def _wanted(notice: Notice, row: Any) -> bool:
    if notice.only is not None:
        return row.id in notice.only
    if not notice.people and row.channel != SubscriberChannel.WEBHOOK:
        return False
    return subs.follows(row.services, notice.service_keys)


def expand(
    rt: Runtime,
    notice: Notice,
    source: Source | None = None,
    *,
    after: int = 0,
    upto: int | None = None,
) -> int:
    """Create the notice's delivery rows (idempotent) for its subscribers with ids in
    (`after`, `upto`]; returns how many."""
    count = 0
    while True:
        with rt.store.begin() as conn:
            if notice.only is not None:
                batch = list(
                    conn.execute(sa.select(subscribers).where(subscribers.c.id.in_(notice.only)))
                )
            else:
                # A notice only webhooks hear reads only webhooks.
                channels = None if notice.people else [SubscriberChannel.WEBHOOK.value]
                batch = subs.recipients(
                    conn,
                    notice.page.id,
                    after_id=after,
                    upto_id=upto,
                    limit=EXPAND_BATCH,
                    channels=channels,
                )
            now = utcnow()
            rows = [
                {
                    "dedup_key": f"{notice.key}:subscriber:{r.id}",
                    "subscriber_id": r.id,
                    "kind": DELIVERY_KIND,
                    "message": {
                        "notice": notice.key,
                        "channel": r.channel,
                        # What the sweeper resumes the notice from.
                        "source": {"kind": source.kind, "payload": source.payload}
                        if source
                        else None,
                    },
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for r in batch
                if _wanted(notice, r)
            ]
            if notice.thread is not None:
                coalesce.place(conn, notice.thread, rows, coalesce.Policy.of(rt.settings), now)
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
    #: Attempts made before this one.
    attempts: int
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None
    #: Disable the subscriber now, not after `DISABLE_AFTER` failures (a user who left).
    disable: bool = False

    @property
    def sent(self) -> bool:
        return self.error is None


class NoLongerMember(ChannelError):
    """A private page's subscriber is no longer a member: not a failure that may pass."""


def _pending_ids(
    rt: Runtime, notice: Notice, now: datetime, *, after: int = 0, upto: int | None = None
) -> list[int]:
    """The notice's claimable deliveries to subscribers with ids in (`after`, `upto`]."""
    prefix = f"{notice.key}:subscriber:"
    query = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.dedup_key.startswith(prefix, autoescape=True))
        .where(claimable(now))
        .where(deliveries.c.subscriber_id > after)
    )
    if upto is not None:
        query = query.where(deliveries.c.subscriber_id <= upto)
    with rt.store.read() as conn:
        return list(conn.execute(query.order_by(deliveries.c.id)).scalars())


def _claim(rt: Runtime, ids: list[int]) -> list[Any]:
    """Move the still-claimable deliveries among `ids` to `sending`; returns them with their
    subscribers. Whoever's UPDATE moves a row is the one who sends it. A claim is not an
    attempt: `attempts` grows when the outcome is recorded."""
    now = utcnow()  # per batch: the lease runs from this claim, not from the run's start
    with rt.store.begin() as conn:
        claimed = list(
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids))
                .where(claimable(now))
                .values(status="sending", updated_at=now)
                .returning(deliveries.c.id)
            ).scalars()
        )
        if not claimed:
            return []
        return list(
            conn.execute(
                sa.select(
                    deliveries.c.id.label("delivery_id"),
                    deliveries.c.attempts.label("delivery_attempts"),
                    deliveries.c.step.label("delivery_step"),
                    deliveries.c.message.label("delivery_message"),
                    subscribers,
                    users.c.email.label("user_email"),
                )
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .outerjoin(users, users.c.id == subscribers.c.user_id)
                .where(deliveries.c.id.in_(claimed))
            )
        )


def _renew(rt: Runtime, ids: list[int]) -> None:
    """Extend the lease of deliveries this run is still sending."""
    with rt.store.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(ids), deliveries.c.status == "sending")
            .values(updated_at=utcnow())
        )


def send_pending(
    rt: Runtime, notice: Notice, ctx: Context, ids: list[int] | None = None
) -> datetime | None:
    """Send the notice's claimable deliveries (those among `ids`); returns when the earliest
    of those that failed for now may be tried again (None: nothing to try again)."""
    if ids is None:
        ids = _pending_ids(rt, notice, utcnow())
    retry_at: datetime | None = None
    if not ids:
        return retry_at
    policy = coalesce.Policy.of(rt.settings)
    with ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="beacon-fanout") as pool:
        for start in range(0, len(ids), SEND_BATCH):
            rows = _claim(rt, ids[start : start + SEND_BATCH])
            screened = coalesce.screen(rt.store, notice.thread, rows, policy, utcnow())
            rows = screened.send
            claimed = [r.delivery_id for r in rows]
            with renewing(functools.partial(_renew, rt, claimed), LEASE_RENEW_EVERY):
                outcomes = send_batch(rt, notice, rows, ctx, pool, screened.summaries)
            for at in (_record(rt, outcomes), screened.held_until):
                if at is not None and (retry_at is None or at < retry_at):
                    retry_at = at
    return retry_at


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` real ones: 4, 8, 16 ... 300."""
    return float(min(2 ** (attempts + 1), 300))


def _record(rt: Runtime, outcomes: list[Outcome]) -> datetime | None:
    """Write a batch's outcomes in one transaction (only over rows still `sending`), one
    UPDATE per kind of outcome; returns the earliest time one that failed for now may be
    tried again."""
    if not outcomes:
        return None
    now = utcnow()
    retry_at: datetime | None = None
    # (status, last_error, next_attempt_at) -> delivery ids
    groups: dict[tuple[str, str | None, datetime | None], list[int]] = defaultdict(list)
    permanent: list[tuple[Outcome, str]] = []
    for o in outcomes:
        if o.sent:
            groups[("sent", None, None)].append(o.delivery_id)
            continue
        error = (o.error or "failed")[:2000]
        if not o.permanent and o.attempts + 1 >= MAX_ATTEMPTS:
            error = f"gave up after {o.attempts + 1} attempts: {error}"[:2000]
            permanent.append((o, error))
            groups[("failed", error, None)].append(o.delivery_id)
        elif o.permanent:
            permanent.append((o, error))
            groups[("failed", error, None)].append(o.delivery_id)
        else:
            # The provider's Retry-After is a floor: retrying sooner only earns another 429.
            wait = max(backoff(o.attempts + 1), o.retry_after or 0.0)
            at = now + timedelta(seconds=wait)
            groups[("pending", error, at)].append(o.delivery_id)
            retry_at = at if retry_at is None or at < retry_at else retry_at
    for (status, reason, when), ids in groups.items():
        if status == "pending" and when is not None:
            # One line per failed attempt and reason (issue 19): no traceback, and a batch
            # that failed together is one line.
            log.warning(
                "%d deliveries (first %s) failed (attempt %d of %d): %s; next try in %d s",
                len(ids),
                ids[0],
                next(o.attempts + 1 for o in outcomes if o.delivery_id == ids[0]),
                MAX_ATTEMPTS,
                reason,
                (when - now).total_seconds(),
            )
    with rt.store.begin() as conn:
        for (status, last_error, next_at), ids in groups.items():
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids), deliveries.c.status == "sending")
                .values(
                    status=status,
                    attempts=deliveries.c.attempts + 1,
                    last_error=last_error,
                    next_attempt_at=next_at,
                    sent_at=now if status == "sent" else None,
                    updated_at=now,
                )
            )
        subs.record_success(conn, [o.subscriber_id for o in outcomes if o.sent])
        for o, error in permanent:
            limit = 1 if o.disable else DISABLE_AFTER
            if subs.record_permanent_failure(conn, o.subscriber_id, error, limit=limit):
                log.warning("subscriber %s disabled: %s", o.subscriber_id, error)
    return retry_at


def send_batch(
    rt: Runtime,
    notice: Notice,
    rows: list[Any],
    ctx: Context,
    pool: ThreadPoolExecutor,
    summaries: dict[int, coalesce.Summary] | None = None,
) -> list[Outcome]:
    """Send a claimed batch, each channel its fastest way: email through SendGrid as
    requests of up to 1,000 personalizations, webhooks concurrently on one async client,
    the rest (SMS, SMTP) from the thread pool."""
    sendgrid = channel_module("email", ctx) == "email"
    people = (SubscriberChannel.EMAIL, SubscriberChannel.USER)
    hooks = [r for r in rows if r.channel == SubscriberChannel.WEBHOOK]
    emails = [r for r in rows if sendgrid and r.channel in people]
    taken = {r.delivery_id for r in emails}
    rest = [
        r for r in rows if r.channel != SubscriberChannel.WEBHOOK and r.delivery_id not in taken
    ]
    summaries = summaries or {}
    pending = [
        pool.submit(send_one, rt, notice, r, ctx, summaries.get(r.delivery_id)) for r in rest
    ]
    outcomes = asyncio.run(_send_webhooks(rt, notice, hooks, ctx)) if hooks else []
    if emails:
        outcomes += _send_emails(rt, notice, emails, ctx, summaries)
    return outcomes + [f.result() for f in pending]


def _failure(row: Any, exc: ChannelError) -> Outcome:
    return Outcome(
        row.delivery_id,
        row.id,
        row.delivery_attempts,
        str(exc),
        exc.permanent,
        exc.retry_after,
        disable=isinstance(exc, NoLongerMember),
    )


async def _send_webhooks(
    rt: Runtime, notice: Notice, rows: list[Any], ctx: Context
) -> list[Outcome]:
    """Every webhook of the batch, at most `ctx.webhook_concurrency` in flight: that many
    lanes take the next row in turn, each on a client of its own with one connection.

    One shared pool of 50 connections cost more CPU than the requests themselves: httpcore
    walks every connection of the pool (a poll() each, and a quadratic idle count) for every
    queued request each time one starts or ends; about 2,000 such checks per request at 50
    (profiled, docs/subscriptions.md). A lane's pool has one connection, so it checks one.
    Rows are sorted by scheme and host (`webhook_host`, readable: no URL is opened to sort),
    so a lane's next row is mostly the same receiver and its kept-alive connection serves
    it."""
    ordered = iter(sorted(rows, key=lambda r: r.webhook_host or ""))
    outcomes: list[Outcome] = []
    lanes = min(ctx.webhook_concurrency, len(rows))
    # Name lookups block, so they run in threads: asyncio's default pool has cpu_count + 4
    # (6 on 2 cores), which would hold every lane to 6 lookups at once. One per lane; the
    # pool ends with this batch's event loop.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="beacon-lookup")
    )

    async def lane() -> None:
        async with outbound.Outbound(
            allow_private=ctx.allow_private, deadline=ctx.outbound_deadline, max_connections=1
        ) as client:
            for row in ordered:  # shared: each lane takes the next row when it is free
                outcomes.append(await _send_webhook(rt, notice, row, ctx, client))

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return outcomes


async def _send_webhook(
    rt: Runtime, notice: Notice, row: Any, ctx: Context, client: outbound.Outbound
) -> Outcome:
    try:
        _kind, target, message = build(rt, notice, row, ctx)
        await webhook.asend(client, message, target)
    except ChannelError as exc:
        return _failure(row, exc)
    except Exception as exc:  # a bug must not lose the others' outcomes
        log.exception("delivery %s to subscriber %s failed", row.delivery_id, row.id)
        return Outcome(row.delivery_id, row.id, row.delivery_attempts, f"internal error: {exc!r}")
    return Outcome(row.delivery_id, row.id, row.delivery_attempts)


#: Stands for each recipient's own unsubscribe link in a batch's one rendered message;
#: SendGrid substitutes it per personalization.
UNSUBSCRIBE_TOKEN = "-beacon-unsubscribe-url-"
#: The same for each recipient's manage page (what they follow, or unsubscribe).
MANAGE_TOKEN = "-beacon-manage-url-"
#: The same for the line saying what a recipient's message sums up (`coalesce.Summary`),
#: as text and as HTML; empty for those whose message is one update.
SUMMARY_TOKEN = "-beacon-summary-"
SUMMARY_HTML_TOKEN = "-beacon-summary-html-"


def _send_emails(
    rt: Runtime,
    notice: Notice,
    rows: list[Any],
    ctx: Context,
    summaries: dict[int, coalesce.Summary] | None = None,
) -> list[Outcome]:
    """The batch's email as SendGrid requests of up to 1,000 recipients, the message rendered
    once with a token for each person's own links (and, when some stand for more than one
    update, for what each one's message sums up)."""
    given = summaries or {}
    summaries = {r.delivery_id: given[r.delivery_id] for r in rows if r.delivery_id in given}
    values = _values(notice)
    if notice.kind != "confirm":
        values.update(unsubscribe_url=UNSUBSCRIBE_TOKEN, manage_url=MANAGE_TOKEN)
    if summaries:
        values.update(summary=SUMMARY_TOKEN, summary_html=Markup(SUMMARY_HTML_TOKEN))
    mail = messages.email(notice.kind, values)
    message = Message(subject=mail.subject, text=mail.text, html=mail.html)
    outcomes: list[Outcome] = []
    ready: list[tuple[Any, sendgrid_email.Recipient]] = []
    for row in rows:
        try:
            address = _email_address(rt, notice, row)
        except ChannelError as exc:
            outcomes.append(_failure(row, exc))
            continue
        if notice.kind == "confirm":
            ready.append((row, sendgrid_email.Recipient(address)))
            continue
        token = _link_token(rt, row)
        url = _unsubscribe_url(notice, token)
        own = {UNSUBSCRIBE_TOKEN: url, MANAGE_TOKEN: _manage_url(notice, token)}
        if summaries:
            summary = _summary_values(summaries.get(row.delivery_id))
            own.update(
                {
                    SUMMARY_TOKEN: summary["summary"],
                    SUMMARY_HTML_TOKEN: str(summary["summary_html"]),
                }
            )
        ready.append((row, sendgrid_email.Recipient(address, own, _unsubscribe_headers(url))))
    for start in range(0, len(ready), sendgrid_email.MAX_RECIPIENTS):
        outcomes += _send_email_chunk(
            message, ready[start : start + sendgrid_email.MAX_RECIPIENTS], ctx
        )
    return outcomes


def _send_email_chunk(
    message: Message, chunk: list[tuple[Any, sendgrid_email.Recipient]], ctx: Context
) -> list[Outcome]:
    try:
        sendgrid_email.send_batch(message, [r for _row, r in chunk], ctx)
    except ChannelError as exc:
        if exc.permanent and len(chunk) > 1:
            # SendGrid refuses a request as a whole: find who it refuses, one by one.
            return [o for item in chunk for o in _send_email_chunk(message, [item], ctx)]
        return [_failure(row, exc) for row, _r in chunk]
    except Exception as exc:  # a bug must not lose the batch; retried later
        log.exception("an email batch of %d failed", len(chunk))
        return [
            Outcome(row.delivery_id, row.id, row.delivery_attempts, f"internal error: {exc!r}")
            for row, _r in chunk
        ]
    return [Outcome(row.delivery_id, row.id, row.delivery_attempts) for row, _r in chunk]


def send_one(
    rt: Runtime, notice: Notice, row: Any, ctx: Context, summary: coalesce.Summary | None = None
) -> Outcome:
    """Send one delivery; never raises (the outcome says what happened)."""
    done = row.delivery_attempts
    try:
        kind, target, message = build(rt, notice, row, ctx, summary)
        get_channel(kind).send(message, target, ctx)
    except ChannelError as exc:
        return Outcome(
            row.delivery_id,
            row.id,
            done,
            str(exc),
            exc.permanent,
            exc.retry_after,
            disable=isinstance(exc, NoLongerMember),
        )
    except Exception as exc:  # a bug must not lose the batch's other outcomes; retried later
        log.exception("delivery %s to subscriber %s failed", row.delivery_id, row.id)
        return Outcome(row.delivery_id, row.id, done, f"internal error: {exc!r}")
    return Outcome(row.delivery_id, row.id, done)


def build(
    rt: Runtime, notice: Notice, row: Any, ctx: Context, summary: coalesce.Summary | None = None
) -> tuple[str, dict[str, Any], Message]:
    """The channel module, target and message for one subscriber."""
    token = _link_token(rt, row)
    unsubscribe_url = _unsubscribe_url(notice, token)
    values = {**_values(notice), **_summary_values(summary)}
    if notice.kind != "confirm":
        values.update(unsubscribe_url=unsubscribe_url, manage_url=_manage_url(notice, token))
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
        assert rt.store.keyring is not None  # a store with a secret key (create_store)
        secret = subs.webhook_secret(rt.store.keyring, row.webhook_secret)
        target = {"url": subs.webhook_url(rt.store.keyring, row), "secret": secret}
        # One webhook-id per delivery: the same on every attempt, so receivers deduplicate.
        message = Message(subject="", text="", payload=body, id=f"msg_{row.delivery_id}")
        return "webhook", target, message
    if channel == SubscriberChannel.SMS:
        text, link = messages.sms(notice.kind, values)
        return (
            "sms",
            {"address": row.address},
            Message(subject="", text=text, link=link),
        )
    address = _email_address(rt, notice, row)
    mail = messages.email(notice.kind, values)
    headers = _unsubscribe_headers(unsubscribe_url) if notice.kind != "confirm" else {}
    message = Message(subject=mail.subject, text=mail.text, html=mail.html, headers=headers)
    return channel_module("email", ctx), {"address": address}, message


def _values(notice: Notice) -> dict[str, Any]:
    page = {"name": notice.page.name, "url": f"{notice.page_url}/", "logo_url": notice.logo_url}
    return {**notice.context, "page": page, **_summary_values(None)}


def _summary_values(summary: coalesce.Summary | None) -> dict[str, Any]:
    """The templates' `summary` (a paragraph of text), `summary_html` and `summary_sms`."""
    if summary is None:
        return {"summary": "", "summary_html": Markup(""), "summary_sms": ""}
    text = summary.text()
    return {
        "summary": f"{text}\n\n",
        "summary_html": Markup(
            '<p style="margin:0 0 12px;padding:8px 12px;background:#fff8c5;'
            'border-radius:6px;font-size:14px">{}</p>'
        ).format(text),
        "summary_sms": f"{summary.short()} ",
    }


def _link_token(rt: Runtime, row: Any) -> str:
    """The token of the subscriber's own links, made again for this message from the secret
    key (the store keeps none: engine.subscriber_links)."""
    assert rt.store.keyring is not None  # a store with a secret key (create_store)
    return links.link_token(rt.store.keyring, row)


def _unsubscribe_url(notice: Notice, token: str) -> str:
    return f"{notice.page_url}/subscriptions/unsubscribe/{token}"


def _manage_url(notice: Notice, token: str) -> str:
    """The subscriber's own page: the services it follows, and unsubscribing (the same
    token as the unsubscribe link)."""
    return f"{notice.page_url}/subscriptions/manage/{token}"


def _unsubscribe_headers(url: str) -> dict[str, str]:
    # RFC 8058 one-click: mail clients POST "List-Unsubscribe=One-Click" to the URL.
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def _email_address(rt: Runtime, notice: Notice, row: Any) -> str:
    """Where an email or account-user subscriber's mail goes (a user's current address,
    while they may hear the page: on a private page, while a member of its teams)."""
    if row.channel != SubscriberChannel.USER:
        return str(row.address)
    with rt.store.read() as conn:
        member = subs.user_may_hear(conn, notice.page, row.user_id)
    if not member or not row.user_email:
        raise NoLongerMember("the user is no longer a member of the page's teams", permanent=True)
    return str(row.user_email)
