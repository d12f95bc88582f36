"""Who will hear about an incident or maintenance step: "N subscribers on M pages will be
notified" and per channel, shown before anything is sent (`engine.audience`, which the
admin API's preview answers from too). Read-only."""

from __future__ import annotations

from collections.abc import Iterable

from engine import audience as counted
from engine.audience import Audience
from engine.db import Store

__all__ = ["Audience", "audience"]


def audience(store: Store, team_id: int, service_ids: Iterable[int]) -> Audience:
    """The subscribers a step of `team_id` touching `service_ids` reaches, and the pages
    it shows on."""
    with store.read() as conn:
        return counted.audience(conn, team_id, service_ids)
