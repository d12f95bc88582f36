"""Host-header page selection: on a page's own host only that page answers, at the root.

A page host is `<slug>.<BEACON_PAGES_DOMAIN>` or a page's custom domain. There `/`,
`/history`, `/api/v2/...` are rewritten to `/p/<slug>/...` before routing; `/p/<other>/...`,
`/api/v1/...` and everything else Beacon serves are 404 (DESIGN.md, HTTP). A `:port` in the
Host header is ignored. Any other host (Beacon's own, an IP) passes through untouched.

The matched page is left in `scope["state"]["page_host"]` so renderers can link at the root.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from engine import domains
from engine.db import Store
from engine.settings import Settings
from engine.tables import status_pages

from .errors import error_answer

# Root paths that are not the page's but still answer on its host: signing in for a private
# page, and the app's static files.
PASS_THROUGH = ("/login", "/logout", "/static/")


@dataclass(frozen=True)
class PageHost:
    """A request's page host: the host name and the page slug it serves."""

    host: str
    slug: str


# Remembered: every request asks (the fast paths pick their host with it), and the few
# names a server is reached by repeat; a flood of made-up ones only cycles the bounded cache.
@functools.lru_cache(maxsize=1024)
def host_name(raw: str) -> str:
    """The Host header's name, lower-cased, without port or trailing dot."""
    raw = raw.strip().lower()
    if raw.startswith("["):  # an IPv6 literal never names a page
        return raw.split("]", 1)[0] + "]"
    return raw.rsplit(":", 1)[0].rstrip(".") if ":" in raw else raw.rstrip(".")


def request_host(scope: Any) -> str:
    """The request's Host header as `host_name` gives it ("" without one)."""
    for name, value in scope.get("headers", []):
        if name == b"host":
            return host_name(value.decode("latin-1"))
    return ""


def slug_for_pages_domain(host: str, pages_domain: str) -> str | None:
    """`acme` for `acme.status.example.com` when the pages domain is `status.example.com`."""
    if not pages_domain or not host.endswith("." + pages_domain):
        return None
    label = host[: -len(pages_domain) - 1]
    return label if label and "." not in label else None


def own_hosts(settings: Settings) -> frozenset[str]:
    """Hosts that are Beacon itself, never a page: the base URL's and the pages domain."""
    return domains.beacon_hosts(settings.base_url, settings.pages_domain)


def custom_domain_slug(store: Store, host: str) -> str | None:
    """The slug of the page whose custom domain is `host`, if any."""
    with store.read() as conn:
        return conn.execute(
            # Operators may have typed the domain in any case; DNS names have none.
            sa.select(status_pages.c.slug).where(
                sa.func.lower(status_pages.c.custom_domain) == host,
                # Only a domain whose DNS showed it is the page's (engine.domains).
                status_pages.c.domain_verified_at.is_not(None),
            )
        ).scalar()


def page_path(slug: str, path: str) -> str | None:
    """Where a root path on `slug`'s host is served, or None when it is 404 there."""
    if path.startswith(PASS_THROUGH):
        return path
    own = f"/p/{slug}"
    if path == own or path.startswith(own + "/"):
        return path
    if path.startswith("/p/") or (path.startswith("/api/") and not path.startswith("/api/v2/")):
        return None
    return own + path


class DomainCache:
    """Custom domain -> slug (or None), remembered for `ttl` seconds per process.

    Every request on a host that is not Beacon's own would otherwise cost a query, which
    would undo the page cache's fast path on custom domains; a changed domain shows within
    `ttl` seconds.
    """

    def __init__(self, store: Store, ttl: float = 5.0, size: int = 10_000) -> None:
        self.store = store
        self.ttl = ttl
        self.size = size
        self.known: dict[str, tuple[str | None, float]] = {}

    def cached(self, host: str) -> tuple[bool, str | None]:
        """(True, slug or None) when `host` is remembered, else (False, None): no query."""
        hit = self.known.get(host)
        if hit is not None and hit[1] > time.monotonic():
            return True, hit[0]
        return False, None

    def slug(self, host: str) -> str | None:
        found, slug = self.cached(host)
        if found:
            return slug
        now = time.monotonic()
        slug = custom_domain_slug(self.store, host)
        if len(self.known) >= self.size:
            # Random Host headers must not grow the process without bound.
            self.known.clear()
        self.known[host] = (slug, now + self.ttl)
        return slug


class PageHosts:
    """Pure ASGI middleware: selects the page by Host and rewrites or refuses the path."""

    def __init__(self, app: ASGIApp, settings: Settings, store: Store) -> None:
        self.app = app
        self.domains = DomainCache(store)
        self.pages_domain = settings.pages_domain
        self.own = own_hosts(settings)

    async def lookup(self, scope: Scope) -> PageHost | None:
        host = request_host(scope)
        if not host or host in self.own or host.startswith("["):
            return None
        slug = slug_for_pages_domain(host, self.pages_domain)
        if slug is None:
            # Only a domain not remembered costs a query, off the event loop.
            found, slug = self.domains.cached(host)
            if not found:
                slug = await run_in_threadpool(self.domains.slug, host)
        return PageHost(host, slug) if slug else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        found = await self.lookup(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        target = page_path(found.slug, scope["path"])
        if target is None:
            await _not_found(scope, receive, send)
            return
        scope = dict(scope)
        if target != scope["path"]:
            raw = scope.get("raw_path") or scope["path"].encode()
            scope["raw_path"] = f"/p/{found.slug}".encode() + raw
        scope["path"] = target
        scope["state"] = {**scope.get("state", {}), "page_host": found}
        await self.app(scope, receive, send)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """404 for a path that is not this page's: a page for a browser, JSON for the rest."""
    response = error_answer(Request(scope, receive), 404, "not found on this host")
    await response(scope, receive, send)
