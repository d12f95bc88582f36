"""Status pages in the admin UI: the list, create, settings, logo and favicon, visit and
activate (iLert's status-page click-flows)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pages.admin import statuspages as api
from pages.auth import Principal

from .web import call, render, view


async def visible_pages(request: Request, who: Principal) -> list[Any]:
    """The pages `who` may see (their teams' pages; all for an admin)."""
    return list(await call(request, who, api.list_pages))


@view(manage=False)
async def home(request: Request, who: Principal) -> Response:
    """The admin home; for a stakeholder, only the links to their teams' pages."""
    return render(request, who, "home.html", pages=await visible_pages(request, who))


@view()
async def page_list(request: Request, who: Principal) -> Response:
    """Every page the caller manages, saying which ones visitors cannot see yet."""
    return render(request, who, "pages.html", pages=await visible_pages(request, who))


routes: list[BaseRoute] = [
    Route("/admin/", home, methods=["GET", "HEAD"]),
    Route("/admin/pages", page_list, methods=["GET", "HEAD"]),
]
