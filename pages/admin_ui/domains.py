"""A page's custom domain in the admin UI: enter it, see the DNS record to create (with the
TTL advice and the Cloudflare-proxy warning of iLert's docs), a live check of the CNAME
(`pages.tls`'s check, refreshed by htmx while the page is open), verification, and where
the certificate stands."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pages import tls
from pages.admin import statuspages as api
from pages.admin.schemas import PagePatch
from pages.auth import Principal

from .web import Problem, call, form_of, model, redirect, render, text, view


def _certificate(request: Request, page: Any, check: dict[str, Any]) -> dict[str, str]:
    """Where the page's certificate stands, as far as Beacon decides it: the TLS proxy
    (Caddy's on-demand TLS) gets one at the first HTTPS visit once `tls/ask` says yes."""
    if not page.custom_domain:
        return {"state": "none", "text": "No custom domain yet."}
    if not check.get("verified"):
        return {
            "state": "waiting",
            "text": "Not yet: a certificate is issued once DNS shows the domain is this page's.",
        }
    if not page.active:
        return {
            "state": "inactive",
            "text": "Not yet: the domain is verified; the certificate waits for Activate.",
        }
    settings = request.app.state.settings
    slug = tls.page_for_domain(request.app.state.store, page.custom_domain, settings.pages_domain)
    if slug != page.slug:
        return {"state": "waiting", "text": "Not yet: the domain is not served by this page."}
    return {
        "state": "ready",
        "text": (
            f"Ready: Beacon tells the TLS proxy (/api/v1/tls/ask) that {page.custom_domain} is"
            " this page's, so the certificate is issued at the first HTTPS visit and renewed"
            " by the proxy."
        ),
    }


async def _context(
    request: Request, who: Principal, page_id: int, verify: bool = False
) -> dict[str, Any]:
    page = await call(request, who, api.get_page, id=page_id)
    check: dict[str, Any] = {}
    if page.custom_domain:
        check = await run_in_threadpool(tls._domain_check, request, page.slug, verify)
    target = tls.expected_target(request.app.state.settings, page.slug)
    certificate = await run_in_threadpool(_certificate, request, page, check)
    return {
        "page": page,
        "check": check,
        "target": target,
        "pages_domain": request.app.state.settings.pages_domain,
        "certificate": certificate,
    }


@view()
async def show_domain(request: Request, who: Principal) -> Response:
    context = await _context(request, who, request.path_params["id"])
    return render(request, who, "domain.html", **context)


@view()
async def domain_check(request: Request, who: Principal) -> Response:
    """The live check alone (htmx refreshes it while the page is open)."""
    context = await _context(request, who, request.path_params["id"])
    return render(request, who, "domain_check.html", **context)


@view()
async def save_domain(request: Request, who: Principal) -> Response:
    page_id = request.path_params["id"]
    form = await form_of(request)
    domain = text(form, "custom_domain").lower().rstrip(".") or None
    try:
        body = model(PagePatch, {"custom_domain": domain})
        await call(request, who, api.update_page, body, id=page_id)
    except Problem as exc:
        context = await _context(request, who, page_id)
        return render(request, who, "domain.html", 422, problem=exc, entered=domain, **context)
    done = f"Custom domain set to {domain}." if domain else "Custom domain removed."
    return redirect(request, f"/admin/pages/{page_id}/domain", done)


@view()
async def verify_domain(request: Request, who: Principal) -> Response:
    page_id = request.path_params["id"]
    await form_of(request)
    context = await _context(request, who, page_id, verify=True)
    done = (
        "Verified: the page is served on its custom domain."
        if context["check"].get("verified")
        else "Not verified yet: DNS does not show the record below."
    )
    return redirect(request, f"/admin/pages/{page_id}/domain", done)


routes: list[BaseRoute] = [
    Route("/admin/pages/{id:int}/domain", show_domain, methods=["GET", "HEAD"]),
    Route("/admin/pages/{id:int}/domain", save_domain, methods=["POST"]),
    Route("/admin/pages/{id:int}/domain/check", domain_check, methods=["GET", "HEAD"]),
    Route("/admin/pages/{id:int}/domain/verify", verify_domain, methods=["POST"]),
]
