"""The fast path: cached public page documents answered before routing and middleware.

A public page is the same for everyone, so an anonymous hit needs nothing but the page
cache: this is what lets one process serve pages near a static file server's speed.
"""

from __future__ import annotations

import functools
from typing import Any

from .cache import (
    PUBLIC_CACHE_CONTROL,
    CacheUnavailable,
    Document,
    accepts_gzip,
    for_runtime,
    gzip_etag,
    not_modified,
)
from .headers import for_content_type
from .hosts import own_hosts, request_host


class FastPages:
    """Answers GETs of cached public page documents before routing and the other middleware.

    A public page is the same for everyone, so an anonymous hit needs nothing but the cache:
    this is what lets one process serve pages near a static file server's speed. Anything
    else (query strings, private or inactive pages, cache misses, other paths) goes on to
    the app unchanged. Fast-path hits are not in the access log.

    When the shared cache (Redis) does not answer, a page this process rendered from the
    store a moment ago (`cache.Fallback`) is served instead; without one, the request goes
    on to the routed path, which renders it.

    Inside the app's middleware (after `pages.hosts` has mapped a page host's paths) it
    needs no arguments. Wrapped around the whole app (`outermost`), it answers only for
    Beacon's own host names, since on a page's host `/p/<other>/` must stay a 404.
    """

    def __init__(
        self, app: Any, runtime: Any = None, own_hosts: frozenset[str] | None = None
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.own_hosts = own_hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and scope["path"].startswith("/p/")
            and not scope.get("query_string")
            and (self.own_hosts is None or request_host(scope) in self.own_hosts)
        ):
            slug, slash, rest = scope["path"][3:].partition("/")
            if slash:
                cache = for_runtime(self.runtime or scope["app"].state.runtime)
                try:
                    entry = await cache.aget(slug)
                except CacheUnavailable:
                    entry = cache.fallback.get(slug)
                doc = entry.get(rest or "index.html") if entry and entry.public else None
                if doc is not None:
                    await _send_document(scope, send, doc)
                    return
        await self.app(scope, receive, send)


def outermost(app: Any, runtime: Any) -> Any:
    """`app` behind the fast paths that run before any of its middleware (`beacon serve`):
    webhook deliveries (`pages.intake.FastIntake`) and cached public pages."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from .intake import FastIntake

    own = own_hosts(runtime.settings)
    served: Any = FastIntake(app, FastPages(app, runtime, own), own)
    trusted = runtime.settings.trusted_proxies
    if trusted:
        # As in the app (pages.app): the client a trusted proxy forwards for, before the
        # fast paths log or record it. The app's own copy then finds the same client again.
        served = ProxyHeadersMiddleware(served, trusted_hosts=list(trusted))
    return served


async def _send_document(scope: Any, send: Any, doc: Document) -> None:
    inm = ims = encodings = None
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            inm = value.decode("latin-1")
        elif name == b"if-modified-since":
            ims = value.decode("latin-1")
        elif name == b"accept-encoding":
            encodings = value.decode("latin-1")
    packed = doc.gzipped is not None and accepts_gzip(encodings)
    if (inm is not None or ims is not None) and not_modified(inm, ims, doc):
        headers = _validators(doc.etag, doc.last_modified, doc.gzipped is not None, packed)
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    body = (doc.gzipped if packed else doc.body) or b""
    headers = _full_headers(
        doc.etag, doc.last_modified, doc.gzipped is not None, packed, doc.content_type, len(body)
    )
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


# Keyed by the documents' validators, never by the documents: a cache of headers must not
# keep thousands of old page bodies alive.
@functools.lru_cache(maxsize=4096)
def _validators(
    etag: str, last_modified: str, has_gzip: bool, packed: bool
) -> list[tuple[bytes, bytes]]:
    """The headers of a fast-path answer, built once per document (the hot path)."""
    headers = [
        (b"etag", (gzip_etag(etag) if packed else etag).encode()),
        (b"last-modified", last_modified.encode()),
        (b"cache-control", PUBLIC_CACHE_CONTROL.encode()),
        # Public pages' documents may be read from any origin (the v2 JSON is made for it).
        (b"access-control-allow-origin", b"*"),
    ]
    if has_gzip:
        headers.append((b"vary", b"Accept-Encoding"))
    return headers


@functools.lru_cache(maxsize=4096)
def _full_headers(
    etag: str, last_modified: str, has_gzip: bool, packed: bool, content_type: str, length: int
) -> list[tuple[bytes, bytes]]:
    headers = [
        *_validators(etag, last_modified, has_gzip, packed),
        (b"content-type", content_type.encode()),
        (b"content-length", str(length).encode()),
        # What pages.headers.SecurityHeaders adds to every other answer.
        *for_content_type(content_type),
    ]
    if packed:
        headers.append((b"content-encoding", b"gzip"))
    return headers
