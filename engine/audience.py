"""Who will hear about an incident or maintenance step, before it is sent: "N subscribers
on M pages will be notified", with the count per channel and per page.

Counted as the fan-out chooses recipients (`engine.subscribers`): the active pages the
team's step shows on, their confirmed subscribers that are not disabled, each one's
service filter, and account users only while they may hear the page (a private page's
member who left its teams is not counted: the fan-out would not send to them). Incident
and maintenance steps reach every channel (people and webhooks alike). Subscribers are
counted in SQL grouped by channel and filter, so a page with 100,000 subscribers costs a
handful of rows, not 100,000. Read-only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import subscribers as subs
from .models import SubscriberChannel
from .tables import status_pages, subscribers, team_members, users

CHANNELS = tuple(c.value for c in SubscriberChannel)


@dataclass(frozen=True)
class PageAudience:
    id: int
    slug: str
    name: str
    by_channel: dict[str, int]

    @property
    def subscribers(self) -> int:
        return sum(self.by_channel.values())


@dataclass(frozen=True)
class Audience:
    pages: list[PageAudience]

    @property
    def subscribers(self) -> int:
        return sum(p.subscribers for p in self.pages)

    @property
    def by_channel(self) -> dict[str, int]:
        total: Counter[str] = Counter({c: 0 for c in CHANNELS})
        for page in self.pages:
            total.update(page.by_channel)
        return dict(total)

    @property
    def sentence(self) -> str:
        people = "subscriber" if self.subscribers == 1 else "subscribers"
        pages = "page" if len(self.pages) == 1 else "pages"
        return f"{self.subscribers} {people} on {len(self.pages)} {pages} will be notified."

    @property
    def channels_sentence(self) -> str:
        """ "3 by email, 1 by webhook" (the channels that have any), or ""."""
        names = {"email": "by email", "sms": "by SMS", "webhook": "by webhook"}
        parts = [f"{n} {names.get(c, 'as account users')}" for c, n in self.by_channel.items() if n]
        return ", ".join(parts)


def _hears(page: subs.Page) -> Any:
    """A filter keeping subscribers the fan-out would send to: every channel but account
    users, and those while they may hear the page (`subscribers.user_may_hear`: active;
    on a private page also an admin or a member of one of its teams)."""
    may = sa.and_(users.c.id == subscribers.c.user_id, users.c.active.is_(True))
    if page.private:
        member = sa.exists().where(
            team_members.c.user_id == users.c.id,
            team_members.c.team_id.in_(sorted(page.team_ids)),
        )
        may = sa.and_(may, sa.or_(users.c.role == "admin", member))
    return sa.or_(subscribers.c.channel != SubscriberChannel.USER.value, sa.exists().where(may))


def page_audience(
    conn: Connection, page_id: int, service_ids: Iterable[int] | None
) -> dict[str, int]:
    """The page's subscribers a step touching `service_ids` (None: no particular service)
    reaches, per channel."""
    page = subs.page_by_id(conn, page_id)
    if page is None:
        return {c: 0 for c in CHANNELS}
    keys_by_id = subs.page_service_keys(conn, page_id)
    touched = (
        None if service_ids is None else {keys_by_id[i] for i in service_ids if i in keys_by_id}
    )
    counts: Counter[str] = Counter({c: 0 for c in CHANNELS})
    rows = conn.execute(
        sa.select(subscribers.c.channel, subscribers.c.services, sa.func.count())
        .where(subscribers.c.page_id == page_id)
        .where(subscribers.c.confirmed.is_(True))
        .where(subscribers.c.disabled_reason.is_(None))
        .where(_hears(page))
        .group_by(subscribers.c.channel, subscribers.c.services)
    )
    for channel, wanted, count in rows:
        if subs.follows(wanted, touched):
            counts[channel] += int(count)
    return dict(counts)


def audience(conn: Connection, team_id: int, service_ids: Iterable[int]) -> Audience:
    """Who a step of `team_id` touching `service_ids` (none: every page of the team)
    reaches."""
    ids = sorted(set(service_ids))
    page_ids = subs.pages_showing(conn, team_id, ids)
    pages = []
    for page_id in page_ids:
        row = conn.execute(
            sa.select(status_pages.c.slug, status_pages.c.name).where(status_pages.c.id == page_id)
        ).one()
        counts = page_audience(conn, page_id, ids or None)
        pages.append(PageAudience(page_id, row.slug, row.name, counts))
    return Audience(pages)
