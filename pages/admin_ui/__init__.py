"""The admin web UI (`/admin/...`): server-rendered Jinja with htmx as an enhancement, for
signed-in admins and responders; stakeholders see the links to their teams' pages and
nothing that manages anything. Every change goes through the admin API's handlers (and
so through `engine/`): see `pages.admin_ui.web`."""

from __future__ import annotations

from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Route

from . import (
    account,
    accounts,
    domains,
    incidents,
    maintenance,
    rules,
    services,
    sources,
    static,
    statuspages,
    subscribers,
)


async def _to_home(_request: object) -> RedirectResponse:
    return RedirectResponse("/admin/", 308)


routes: list[BaseRoute] = [
    Route("/admin", _to_home, methods=["GET", "HEAD"]),
    *static.routes,
    *account.routes,
    *statuspages.routes,
    *domains.routes,
    *subscribers.routes,
    *incidents.routes,
    *maintenance.routes,
    *services.routes,
    *sources.routes,
    *rules.routes,
    *accounts.routes,
]
