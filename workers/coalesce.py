"""Coalescing and limits for people's notifications (issue 15, item 2).

People (email, SMS, private-page users) get one message for steps close together and a
bounded number of messages an hour. Webhook receivers are machines that want every event,
as Statuspage sends them, and get each one (they deduplicate on `webhook-id`).

A *thread* is what a person follows from one message to the next: an incident, a
maintenance window or a component, on one page (`workers.messages.notices.Thread`). Each
step is still one delivery row per subscriber, under its own dedup key, so retries, workers
and restarts never send a step twice; people's rows also carry their thread and step. Then:

- Window (`BEACON_NOTIFY_WINDOW`, default 30 s). An incident's or window's first message
  goes at once; a step within the window after a message waits for the window's end. A bare
  component change waits a window before its first message, since a status that flaps back
  is no news. While a row waits, a later step of its thread takes its place (the waiting row
  becomes `superseded` and the new one keeps its time): one message, with the latest state.
- Nothing changed. When a row's time comes and its state is what the subscriber was last
  told on the thread (or, for a component, what was true before the thread's first step),
  nothing is sent (`unchanged`).
- Cap (`BEACON_NOTIFY_HOURLY_CAP`, default 20). A subscriber who had that many messages in
  the last hour gets the next one when the oldest of them turns an hour old; later steps
  keep replacing it meanwhile, and the message that goes says what it stands for ("3 more
  updates to API errors since Dec 07, 14:05 UTC").
- Order. A row is not sent when a later step of its thread is already queued, being sent or
  sent: nobody hears an older state after a newer one, whichever worker runs first.

Waiting rows are `pending` with `next_attempt_at` (the due-time column retries use) and their
notice gets a `notify.resume` deadline then, both in the store: a restart loses neither, and
the sweeper resumes anything left behind. Embedded and scaled modes run this same code. The
cap is counted per batch: two workers sending other threads to one subscriber at the same
instant may each pass it once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.db import Store
from engine.settings import Settings
from engine.tables import deliveries

from .messages.notices import Thread, iso

#: Channels whose subscribers are people.
PEOPLE = frozenset({"email", "sms", "user"})
SUPERSEDED = "superseded"
UNCHANGED = "unchanged"
#: Rows that are, or will be, a message.
LIVE = ("pending", "sending", "sent")
HOUR = timedelta(hours=1)
REPLACED = "replaced by a later update of the same thread"
OVERTAKEN = "a later update of the same thread was already on its way"
NOTHING_NEW = "nothing changed since the last message"


@dataclass(frozen=True)
class Policy:
    window: timedelta
    #: Messages an hour per subscriber; 0: no limit.
    cap: int

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(timedelta(seconds=settings.notify_window), settings.notify_hourly_cap)


def place(
    conn: Connection, thread: Thread, rows: list[dict[str, Any]], policy: Policy, now: datetime
) -> None:
    """Prepare new delivery rows (about to be inserted) of a threaded notice: people's rows
    get the thread, step and the state they show, and are timed against what the thread
    already holds for each subscriber; the waiting rows they replace are superseded."""
    for row in rows:
        row.setdefault("thread", None)
        row.setdefault("step", None)
        row.setdefault("next_attempt_at", None)
        row.setdefault("last_error", None)
    people = [r for r in rows if r["message"].get("channel") in PEOPLE]
    if not people:
        return
    held = _thread_rows(conn, thread.key, [r["subscriber_id"] for r in people])
    replaced: list[int] = []
    for row in people:
        message = row["message"]
        row["thread"], row["step"] = thread.key, thread.step
        message.update(state=thread.state, before=thread.before, merged=0, since=None)
        mine = held.get(row["subscriber_id"], [])
        if any(x.step == thread.step for x in mine):
            continue  # already there (a re-run): the insert skips it
        if any(x.step > thread.step for x in mine):
            row["status"], row["last_error"] = SUPERSEDED, OVERTAKEN
            continue
        waiting = [x for x in mine if x.status == "pending"]
        if waiting:
            replaced += [x.id for x in waiting]
            first = min(waiting, key=lambda x: x.step)
            message["merged"] = sum(1 + int(x.message.get("merged") or 0) for x in waiting)
            message["since"] = first.message.get("since") or iso(first.created_at)
            message["before"] = first.message.get("before")
            dues = [x.next_attempt_at for x in waiting]
            row["next_attempt_at"] = None if None in dues else min(dues)
            # Why it waits (the cap holding it back) is the new row's reason as well.
            row["last_error"] = max(waiting, key=lambda x: x.step).last_error
            continue
        row["next_attempt_at"] = _due(thread, mine, policy, now)
    if replaced:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(replaced), deliveries.c.status == "pending")
            .values(status=SUPERSEDED, last_error=REPLACED, updated_at=now)
        )


def _due(thread: Thread, mine: Sequence[Any], policy: Policy, now: datetime) -> datetime | None:
    """When a new step's message may go (None: now)."""
    if not policy.window:
        return None
    if not thread.leading:
        return now + policy.window
    told = [x.sent_at for x in mine if x.status == "sent" and x.sent_at is not None]
    told += [x.updated_at for x in mine if x.status == "sending"]
    last = max(told, default=None)
    if last is None or last + policy.window <= now:
        return None
    return last + policy.window


def _thread_rows(conn: Connection, key: str, subscriber_ids: list[int]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = defaultdict(list)
    for row in conn.execute(
        sa.select(
            deliveries.c.id,
            deliveries.c.subscriber_id,
            deliveries.c.step,
            deliveries.c.status,
            deliveries.c.message,
            deliveries.c.next_attempt_at,
            deliveries.c.last_error,
            deliveries.c.sent_at,
            deliveries.c.created_at,
            deliveries.c.updated_at,
        ).where(
            deliveries.c.subscriber_id.in_(subscriber_ids),
            deliveries.c.thread == key,
            deliveries.c.status.in_(LIVE),
        )
    ):
        found[row.subscriber_id].append(row)
    return found


@dataclass(frozen=True)
class Summary:
    """What one message stands for besides its own step."""

    merged: int
    since: str
    title: str

    def text(self) -> str:
        since = datetime.fromisoformat(self.since.replace("Z", "+00:00"))
        updates = "update" if self.merged == 1 else "updates"
        return (
            f"{self.merged} more {updates} to {self.title} since "
            f"{since:%b %d, %H:%M} UTC: this message has the latest."
        )

    def short(self) -> str:
        return f"(+{self.merged} {'update' if self.merged == 1 else 'updates'})"


@dataclass
class Screened:
    """Of a claimed batch: the rows to send, what each stands for, and when the earliest
    row held back by the cap may go."""

    send: list[Any]
    summaries: dict[int, Summary] = field(default_factory=dict)
    held_until: datetime | None = None


def screen(
    store: Store, thread: Thread | None, rows: list[Any], policy: Policy, now: datetime
) -> Screened:
    """Decide, for claimed rows (`sending`) of a notice, which people's rows go now; the
    others are finished (`superseded`, `unchanged`) or put back to wait for the cap, in one
    transaction and only while still `sending`. Rows of other channels all go."""
    people = [r for r in rows if thread is not None and r.channel in PEOPLE and r.delivery_step]
    if thread is None or not people:
        return Screened(list(rows))
    people_ids = {r.delivery_id for r in people}
    go = [r for r in rows if r.delivery_id not in people_ids]
    ids = [r.id for r in people]
    finished: dict[str, list[int]] = defaultdict(list)
    waits: list[dict[str, Any]] = []
    summaries: dict[int, Summary] = {}
    held_until: datetime | None = None
    with store.begin() as conn:
        history = _thread_rows(conn, thread.key, ids)
        sent = _sent_last_hour(conn, ids, now) if policy.cap else {}
        for row in people:
            message = row.delivery_message or {}
            earlier = [x for x in history.get(row.id, []) if x.step != row.delivery_step]
            if any(x.step > row.delivery_step for x in earlier):
                finished[SUPERSEDED].append(row.delivery_id)
                continue
            told = max(
                (x for x in earlier if x.status == "sent"), key=lambda x: x.step, default=None
            )
            baseline = (told.message or {}).get("state") if told else message.get("before")
            if baseline is not None and baseline == message.get("state"):
                finished[UNCHANGED].append(row.delivery_id)
                continue
            count, oldest = sent.get(row.id, (0, None))
            if policy.cap and count >= policy.cap and oldest is not None:
                until = oldest + HOUR
                held_until = until if held_until is None else min(held_until, until)
                waits.append(
                    {
                        "_id": row.delivery_id,
                        "_at": until,
                        "_why": f"held back: {count} messages in the last hour (the limit is "
                        f"{policy.cap}); the next goes at {iso(until)}",
                    }
                )
                continue
            if message.get("merged"):
                summaries[row.delivery_id] = Summary(
                    int(message["merged"]), str(message["since"]), thread.title
                )
            go.append(row)
        _finish(conn, finished, waits, now)
    return Screened(go, summaries, held_until)


def _sent_last_hour(
    conn: Connection, subscriber_ids: list[int], now: datetime
) -> dict[int, tuple[int, datetime]]:
    """Per subscriber: people's messages sent in the hour before `now`, and the oldest's time."""
    return {
        # SQLite hands an aggregate's time back naive; it is UTC.
        row.subscriber_id: (int(row.n), _aware(row.oldest))
        for row in conn.execute(
            sa.select(
                deliveries.c.subscriber_id,
                sa.func.count().label("n"),
                sa.func.min(deliveries.c.sent_at).label("oldest"),
            )
            .where(
                deliveries.c.subscriber_id.in_(subscriber_ids),
                deliveries.c.thread.is_not(None),
                deliveries.c.status == "sent",
                deliveries.c.sent_at > now - HOUR,
            )
            .group_by(deliveries.c.subscriber_id)
        )
    }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _finish(
    conn: Connection, finished: dict[str, list[int]], waits: list[dict[str, Any]], now: datetime
) -> None:
    reasons = {SUPERSEDED: OVERTAKEN, UNCHANGED: NOTHING_NEW}
    for status, ids in finished.items():
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(ids), deliveries.c.status == "sending")
            .values(status=status, last_error=reasons[status], updated_at=now)
        )
    if waits:
        # Back to waiting, with no attempt counted: nothing was sent.
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == sa.bindparam("_id"), deliveries.c.status == "sending")
            .values(
                status="pending",
                next_attempt_at=sa.bindparam("_at"),
                last_error=sa.bindparam("_why"),
                updated_at=now,
            ),
            waits,
        )
