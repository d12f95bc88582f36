"""Custom domains over HTTP: Caddy's on-demand TLS check and the admin API's DNS check.

`GET /api/v1/tls/ask?domain=D` is Caddy's on-demand TLS permission check.

Caddy asks before it gets a certificate for a name it has not seen; answering 200 only for
an active page's host or custom domain keeps anyone pointing random names at Beacon from
making it request certificates (and exhausting the CA's rate limits).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.access import load_page_info
from engine.db import Store
from engine.domains import check_cname
from engine.settings import Settings
from engine.tables import status_pages

from .auth import require_principal
from .hosts import host_name, slug_for_pages_domain


def page_for_domain(store: Store, domain: str, pages_domain: str) -> str | None:
    """The slug of the active page served at `domain`, or None."""
    slug = slug_for_pages_domain(domain, pages_domain)
    query = sa.select(status_pages.c.slug).where(status_pages.c.active.is_(True))
    if slug is not None:
        query = query.where(status_pages.c.slug == slug)
    else:
        query = query.where(sa.func.lower(status_pages.c.custom_domain) == domain)
    with store.read() as conn:
        return conn.execute(query).scalar()


async def ask(request: Request) -> JSONResponse:
    """200 when the domain is an active page's host or custom domain, else 404."""
    raw = request.query_params.get("domain", "")
    if not raw.strip():
        raise HTTPException(400, "the query parameter `domain` is required (?domain=example.com)")
    domain = host_name(raw)
    slug = await run_in_threadpool(
        page_for_domain, request.app.state.store, domain, request.app.state.settings.pages_domain
    )
    if slug is None:
        raise HTTPException(404, f"{domain} is not the host of an active status page")
    return JSONResponse({"domain": domain, "page": slug})


def expected_target(settings: Settings, slug: str) -> str:
    """Where a custom domain's CNAME should point: the page's own host under the pages
    domain when there is one, else the host of Beacon's base URL."""
    if settings.pages_domain:
        return f"{slug}.{settings.pages_domain}"
    return (urlsplit(settings.base_url).hostname or "").lower()


def _domain_check(request: Request, slug: str) -> dict[str, Any]:
    who = require_principal(request)
    store: Store = request.app.state.store
    with store.read() as conn:
        page = load_page_info(conn, slug)
    if page is None or not (who.admin or page.team_ids & who.team_ids):
        raise HTTPException(404, f"no status page {slug!r}")
    settings: Settings = request.app.state.settings
    target = expected_target(settings, slug)
    if not page.custom_domain:
        return {
            "page": slug,
            "domain": None,
            "expected_target": target,
            "ok": False,
            "targets": [],
            "error": "the page has no custom domain",
        }
    resolver = request.app.state.runtime.extras.get("dns_resolver")
    result = check_cname(page.custom_domain, target, resolver)
    return {
        "page": slug,
        "domain": result.domain,
        "expected_target": result.expected,
        "ok": result.ok,
        "targets": result.targets,
        "error": result.error,
    }


async def domain_status(request: Request) -> JSONResponse:
    """Whether the page's custom domain has its CNAME pointing at Beacon."""
    body = await run_in_threadpool(_domain_check, request, request.path_params["slug"])
    return JSONResponse(body)


routes = [
    Route("/api/v1/tls/ask", ask, methods=["GET"]),
    Route("/api/v1/status-pages/{slug}/domain", domain_status, methods=["GET"]),
]
