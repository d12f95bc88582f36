"""Who will hear about an incident or maintenance step: "N subscribers on M pages will be
notified", shown before anything is sent. Read-only; counted from the subscribers table as
the fan-out chooses recipients (`engine.subscribers`: the active pages the team's step
shows on, their confirmed, working subscribers, each one's service filter)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from engine import subscribers as subs
from engine.db import Store
from engine.tables import subscribers


@dataclass(frozen=True)
class Audience:
    subscribers: int
    pages: int

    @property
    def sentence(self) -> str:
        people = "subscriber" if self.subscribers == 1 else "subscribers"
        pages = "page" if self.pages == 1 else "pages"
        return f"{self.subscribers} {people} on {self.pages} {pages} will be notified."


def audience(store: Store, team_id: int, service_ids: Iterable[int]) -> Audience:
    """The subscribers a step of `team_id` touching `service_ids` reaches, and on how many
    pages it shows."""
    ids = sorted(set(service_ids))
    count = 0
    with store.read() as conn:
        page_ids = subs.pages_showing(conn, team_id, ids)
        for page_id in page_ids:
            keys_by_id = subs.page_service_keys(conn, page_id)
            touched = {keys_by_id[i] for i in ids if i in keys_by_id} if ids else None
            rows = conn.execute(
                sa.select(subscribers.c.services)
                .where(subscribers.c.page_id == page_id)
                .where(subscribers.c.confirmed.is_(True))
                .where(subscribers.c.disabled_reason.is_(None))
            )
            count += sum(1 for (wanted,) in rows if subs.follows(wanted, touched))
    return Audience(count, len(page_ids))
