"""Who will hear about an incident or maintenance step: "N subscribers on M pages will be
notified" and per channel, shown before anything is sent (`engine.audience`, which the
admin API's preview answers from too). Read-only."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from engine import audience as counted
from engine.audience import Audience
from engine.db import Store
from pages.auth import Principal

from .web import team_choices

__all__ = ["Audience", "audience", "default_team", "reach"]


def audience(store: Store, team_id: int, service_ids: Iterable[int]) -> Audience:
    """The subscribers a step of `team_id` touching `service_ids` reaches, and the pages
    it shows on."""
    with store.read() as conn:
        return counted.audience(conn, team_id, service_ids)


async def reach(
    request: Request, who: Principal, team: str, service_ids: Iterable[int]
) -> Audience | None:
    """What the incident or maintenance form shows before sending: the audience of a step
    of `team` (a key, as the form has it) touching `service_ids`; None while no team the
    caller may act for is chosen."""
    team_id = next((t.id for t in team_choices(request, who) if t.key == team), None)
    if team_id is None:
        return None
    return await run_in_threadpool(audience, request.app.state.store, team_id, list(service_ids))


def default_team(request: Request, who: Principal) -> str:
    """The team a new incident or window is for when the caller can act for one only."""
    teams = team_choices(request, who)
    return teams[0].key if len(teams) == 1 else ""
