"""Custom domains over HTTP: Caddy's on-demand TLS check and the admin API's DNS check.

`GET /api/v1/tls/ask?domain=D` is Caddy's on-demand TLS permission check.

Caddy asks before it gets a certificate for a name it has not seen; answering 200 only for
an active page's host or custom domain keeps anyone pointing random names at Beacon from
making it request certificates (and exhausting the CA's rate limits).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine import authz, domains
from engine import statuspages as page_writes
from engine.access import load_page_info
from engine.authz import Action
from engine.db import Store
from engine.domains import check_cname, check_txt, resolver_for, txt_name, txt_value
from engine.settings import Settings
from engine.tables import status_pages

from .auth import require_principal
from .authz import require
from .hosts import host_name, slug_for_pages_domain
from .state import of as pages_state


def page_for_domain(store: Store, domain: str, pages_domain: str) -> str | None:
    """The slug of the active page served at `domain`, or None."""
    slug = slug_for_pages_domain(domain, pages_domain)
    query = sa.select(status_pages.c.slug).where(status_pages.c.active.is_(True))
    if slug is not None:
        query = query.where(status_pages.c.slug == slug)
    else:
        query = query.where(
            sa.func.lower(status_pages.c.custom_domain) == domain,
            status_pages.c.domain_verified_at.is_not(None),
        )
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
    """Where a custom domain's CNAME should point (`engine.domains.expected_target`)."""
    return domains.expected_target(settings.base_url, settings.pages_domain, slug)


def _resolver(request: Request) -> Any:
    found = pages_state(request.app.state.runtime).dns_resolver
    return found or resolver_for(request.app.state.settings.dns_server)


def _domain_check(request: Request, slug: str, verify: bool = False) -> dict[str, Any]:
    """The page's custom domain as DNS shows it; with `verify`, a passing check marks the
    domain verified (from then on the page is served on it)."""
    who = require_principal(request)
    store: Store = request.app.state.store
    with store.read() as conn:
        page = load_page_info(conn, slug)
        row = conn.execute(sa.select(status_pages).where(status_pages.c.slug == slug)).first()
        managers = authz.team_target(conn, page.team_ids) if page is not None else None
    if page is None or row is None or managers is None:
        raise HTTPException(404, f"no status page {slug!r}")
    # The TXT token proves the domain is the page's: only the page's managers see it.
    require(request, who, Action.MANAGE_PAGES, managers, f"no status page {slug!r}")
    settings: Settings = request.app.state.settings
    target = expected_target(settings, slug)
    if not page.custom_domain:
        return {
            "page": slug,
            "domain": None,
            "expected_target": target,
            "ok": False,
            "verified": False,
            "targets": [],
            "error": "the page has no custom domain",
        }
    if row.domain_token:
        token = row.domain_token
    else:
        with store.begin() as conn:
            token = page_writes.domain_token(conn, row.id)
    resolver = _resolver(request)
    result = check_cname(page.custom_domain, target, resolver)
    # A CNAME proves the domain is the page's only when its target is the page's own.
    cname_proves = result.ok and bool(settings.pages_domain)
    txt_ok, txt_error = check_txt(page.custom_domain, token, resolver)
    verified = row.domain_verified_at is not None
    if verify and not verified and (cname_proves or txt_ok):
        with store.begin() as conn:
            verified = page_writes.verify_domain(conn, row.id, token, actor=who.actor)
    return {
        "page": slug,
        "domain": result.domain,
        "expected_target": result.expected,
        "ok": result.ok,
        "verified": verified,
        # Why the re-check stopped serving a domain verified before (engine.domain_checks).
        "withdrawn_because": None if verified else row.domain_error,
        "txt_record": {"name": txt_name(page.custom_domain), "value": txt_value(token)},
        "targets": result.targets,
        "error": result.error if (result.ok or not txt_ok) else None,
        "txt_error": txt_error,
    }


async def domain_status(request: Request) -> JSONResponse:
    """Whether the page's custom domain points at Beacon, and whether it is verified."""
    body = await run_in_threadpool(_domain_check, request, request.path_params["slug"])
    return JSONResponse(body)


async def domain_verify(request: Request) -> JSONResponse:
    """Check the domain's DNS now and, when it shows the domain is the page's, serve the
    page on it from now on."""
    body = await run_in_threadpool(_domain_check, request, request.path_params["slug"], True)
    return JSONResponse(body, 200 if body["verified"] else 409)


routes = [
    Route("/api/v1/tls/ask", ask, methods=["GET"]),
    Route("/api/v1/status-pages/{slug}/domain", domain_status, methods=["GET"]),
    Route("/api/v1/status-pages/{slug}/domain/verify", domain_verify, methods=["POST"]),
]
