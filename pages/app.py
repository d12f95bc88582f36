"""The Starlette application: built from plain lists of routes and middleware.

Each area of the app keeps its routes in its own module (`pages.health.routes`, ...);
`create_app` concatenates them. `background` (what `beacon serve` passes, from `cli.wiring`)
is the work that runs beside the app for its lifetime: the dispatcher ticker and, in
embedded mode, the RQ worker threads, which belong to `workers`, which `pages` never imports.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from engine.runtime import Runtime, install

from . import (
    account_links,
    admin,
    admin_ui,
    badge,
    embed,
    fastpath,
    feeds,
    health,
    intake,
    login,
    oidc,
    public,
    root,
    sns,
    sources_api,
    statuspage_api,
    subscriptions,
    tls,
    why,
)
from .authz import declare
from .bodycap import DEFAULT_LIMIT, BodyCap
from .errors import EXCEPTION_HANDLERS, log_access
from .headers import SecurityHeaders
from .hosts import PageHosts
from .page_access import OneVary
from .sessions import CrossSiteGuard, Sessions


class AccessLog:
    """One log line per request, with integration keys redacted (uvicorn's own access log is
    off: it would print them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log_access(scope, status, start)


def all_routes() -> list[BaseRoute]:
    """Every route of the app, in matching order."""
    # Page routes go last: root-served custom-domain routes must not shadow the others.
    return [
        *root.routes,
        *health.routes,
        *intake.routes,
        *sources_api.routes,
        *why.routes,
        *admin.routes,
        *admin_ui.routes,
        *login.routes,
        *oidc.routes,
        *account_links.routes,
        *subscriptions.routes,
        *tls.routes,
        *statuspage_api.routes,
        *feeds.routes,
        *badge.routes,
        *embed.routes,
        *public.routes,
    ]


#: Work that runs beside the app while it serves (entered at start-up, left at shutdown).
Background = Callable[[], contextlib.AbstractContextManager[object]]


def create_app(runtime: Runtime, *, background: Background | None = None) -> Starlette:
    """The app for `runtime`; with `background`, it also runs that for the app's lifetime
    (`cli.wiring.app` passes the dispatcher and, in embedded mode, the worker threads)."""
    install(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Kept here, not read back from app.state: a test client may run the lifespan of
        # one app more than once at a time, and each run closes the client it opened.
        client = app.state.sns_http = sns.open_client(runtime.settings)
        try:
            with background() if background is not None else contextlib.nullcontext():
                yield
        finally:
            if app.state.sns_http is client:
                app.state.sns_http = None
            await client.aclose()
            await runtime.queues.aclose()

    settings = runtime.settings
    middleware = [
        # Outermost: every answer gets the security headers, those the other middleware
        # gives itself too (a page host's 404, a body cap's 413).
        Middleware(SecurityHeaders),
        # Before anything reads the client's address or scheme: what a trusted proxy says
        # about them (the sign-in limits count real addresses; cookies get Secure on https).
        *(
            [Middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))]
            if settings.trusted_proxies
            else []
        ),
        # First of all: a page host's root paths become /p/<slug>/... (or 404), so that on
        # a page's host nothing else, not even the fast path, answers for another page.
        Middleware(PageHosts, settings=runtime.settings, store=runtime.store),
        # Every body is capped before anything reads it (pages/bodycap.py).
        Middleware(
            BodyCap,
            default=DEFAULT_LIMIT,
            limits=[
                (r"^/api/v1/events/", settings.max_body_bytes),
                (r"^/p/[^/]+/subscribe$", subscriptions.MAX_BODY),
            ],
        ),
        # Cached public pages are answered before everything else (pages/fastpath.py).
        Middleware(fastpath.FastPages),
        Middleware(AccessLog),
        Middleware(OneVary),
        Middleware(
            Sessions,
            secret_key=settings.secret_key.get_secret_value(),
            max_age=settings.session_max_hours * 3600,
        ),
        Middleware(CrossSiteGuard, base_url=settings.base_url),
    ]
    app = Starlette(
        # Every route declares its action and is gated by engine.authz (pages/authz.py).
        routes=declare(all_routes()),
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.settings = runtime.settings
    app.state.store = runtime.store
    app.state.metrics = health.Metrics()
    app.state.sns_http = None  # opened by the lifespan
    return app
