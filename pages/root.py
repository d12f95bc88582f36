"""The site's root, `/`: where a visitor lands who was given only Beacon's address.

With exactly one active public page it sends the visitor there; otherwise it lists the
active public pages by name. Private and inactive pages are never named here: their
existence is for their teams to know (DESIGN.md, Status page). On a page's own host `/` is
that page (`pages.hosts` rewrites it before routing), so this route never answers there.
"""

from __future__ import annotations

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engine.db import Store
from engine.tables import status_pages

from .errors import PLAIN_ENV

#: Short: a page activated or retired shows here within a minute.
CACHE_CONTROL = "public, max-age=60"


def public_pages(store: Store) -> list[tuple[str, str]]:
    """(slug, name) of every active public page, by name."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(status_pages.c.slug, status_pages.c.name)
            .where(status_pages.c.active.is_(True), status_pages.c.type == "public")
            .order_by(status_pages.c.name, status_pages.c.slug)
        ).all()
    return [(row.slug, row.name) for row in rows]


async def root(request: Request) -> Response:
    pages = await run_in_threadpool(public_pages, request.app.state.store)
    headers = {"Cache-Control": CACHE_CONTROL}
    if len(pages) == 1:
        return RedirectResponse(f"/p/{pages[0][0]}/", 302, headers=headers)
    body = PLAIN_ENV.get_template("root.html").render(pages=pages)
    return HTMLResponse(body, headers=headers)


routes: list[BaseRoute] = [Route("/", root, methods=["GET", "HEAD"])]
