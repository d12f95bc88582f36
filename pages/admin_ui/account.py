"""Your account in the admin UI, for every signed-in user (stakeholders too): personal feed
links for the private pages you may read (RSS, Atom and calendar addresses for readers that
send no cookie), each shown once when made and revocable at any time."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pages.admin import feed_links as api
from pages.admin.schemas import FeedLinkIn
from pages.auth import Principal

from .statuspages import visible_pages
from .web import Problem, call, form_of, model, redirect, render, text, view


async def _account(
    request: Request, who: Principal, status: int = 200, **extra: object
) -> Response:
    links = await call(request, who, api.list_links)
    pages = [p for p in await visible_pages(request, who) if p.type == "private"]
    return render(request, who, "account.html", status, links=links, pages=pages, **extra)


@view(manage=False)
async def account(request: Request, who: Principal) -> Response:
    return await _account(request, who)


@view(manage=False)
async def create_link(request: Request, who: Principal) -> Response:
    """Make a feed link and show its addresses, once."""
    form = await form_of(request)
    try:
        made = await call(
            request, who, api.create_link, model(FeedLinkIn, {"page": text(form, "page")})
        )
    except Problem as exc:
        return await _account(request, who, 422, problem=exc)
    return await _account(request, who, 201, created=made)


@view(manage=False)
async def revoke_link(request: Request, who: Principal) -> Response:
    await form_of(request)
    await call(request, who, api.revoke_link, id=request.path_params["id"])
    return redirect(request, "/admin/account", "Feed link revoked: it stopped working.")


routes: list[BaseRoute] = [
    Route("/admin/account", account, methods=["GET", "HEAD"]),
    Route("/admin/account/feed-links", create_link, methods=["POST"]),
    Route("/admin/account/feed-links/{id:int}/revoke", revoke_link, methods=["POST"]),
]
