"""The HTTP side of engine.access: every page route starts with `guard(request, want)`.

`guard` reads the slug from the route (`/p/{slug}/...`; pages.hosts rewrites a page host's
root paths into that shape), asks engine.access, and either returns the granted `Access`
or raises the denial as an HTTP answer with DESIGN.md's status and cache headers.
`finish` puts the same headers (and CORS on public pages) on a granted response.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import access
from engine.access import Access, Want
from engine.db import Store

from .auth import principal
from .cache import CacheUnavailable, Entry, for_runtime
from .public import document_response
from .render import cold_render, fallback_render

PUBLIC_CACHE = "public, max-age=30"
CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}


class PageDenied(HTTPException):
    """A page route's denial: 404, 401 or the login redirect, with private cache headers."""


def _check(request: Request, want: Want) -> Access:
    store: Store = request.app.state.store
    viewer = principal(request)
    slug = request.path_params["slug"]
    next_path = request.url.path
    if request.url.query:
        next_path += "?" + request.url.query
    with store.read() as conn:
        return access.check(conn, slug, viewer, want, next_path)


async def guard(request: Request, want: Want) -> Access:
    """The granted access for the request's page, or raises its denial."""
    decision = await run_in_threadpool(_check, request, want)
    if not decision.allowed:
        raise PageDenied(decision.status, decision.message, headers=decision.headers)
    return decision


def finish(response: Response, decision: Access, *, cors: bool = False) -> Response:
    """Put the access headers on a granted response: private pages are never cached by
    anyone else; public ones may be, briefly, and with `cors` any site may read them."""
    if decision.headers:
        for name, value in decision.headers.items():
            response.headers[name] = value
    else:
        response.headers.setdefault("Cache-Control", PUBLIC_CACHE)
        if cors:
            response.headers.update(CORS_HEADERS)
    return response


async def granted_entry(request: Request, want: Want) -> tuple[Entry | None, Access]:
    """The access decision for the request's page (`guard`: raises when refused) and the
    page's cache entry, rendered on a cold miss (None when the page cannot be rendered)."""
    decision = await guard(request, want)
    assert decision.page is not None  # guard raises for a page that does not exist
    entry = await page_entry(request.app.state.runtime, decision.page.slug)
    if entry is not None and entry.page_id != decision.page.id:
        entry = None  # the slug's entry is of a page deleted a moment ago
    return entry, decision


async def page_entry(rt: Any, slug: str) -> Entry | None:
    """The page's cache entry, rendered on a cold miss; when the shared cache (Redis)
    does not answer, rendered from the store (kept a few seconds in this process)."""
    cache = for_runtime(rt)
    try:
        entry = await cache.aget(slug)
    except CacheUnavailable:
        return cache.fallback.get(slug) or await run_in_threadpool(fallback_render, rt, slug)
    if entry is None:
        entry = await run_in_threadpool(cold_render, rt, slug)
    return entry


async def serve_document(request: Request, name: str, *, cors: bool = False) -> Response:
    """Document `name` of the request's page from the page cache (pages.documents renders
    it with the page), after the access check, with validators and the access headers."""
    entry, decision = await granted_entry(request, Want.DATA)
    assert decision.page is not None
    doc = entry.get(name) if entry is not None else None
    if doc is None:
        raise HTTPException(404, f"page {decision.page.slug!r} has no document {name!r}")
    response = document_response(request, doc, public=decision.page.public)
    return finish(response, decision, cors=cors)


class OneVary:
    """Pure ASGI middleware that merges repeated `Vary` values into one header.

    Page routes send `Vary: Cookie, Authorization`; the session middleware then appends
    `Cookie` again whenever the route looked at the session. Caches treat the repeats the
    same, but the header should read as DESIGN.md writes it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = merge_vary(message.get("headers", []))
            await send(message)

        await self.app(scope, receive, send_wrapper)


def merge_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with every `Vary` folded into one, each token once, first spelling kept."""
    tokens: list[str] = []
    others = []
    for name, value in headers:
        if name.lower() == b"vary":
            for token in value.decode("latin-1").split(","):
                token = token.strip()
                if token and token.lower() not in (t.lower() for t in tokens):
                    tokens.append(token)
        else:
            others.append((name, value))
    if tokens:
        others.append((b"vary", ", ".join(tokens).encode("latin-1")))
    return others
