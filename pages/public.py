"""The status page's routes: the page, the archive, incident permalinks, live updates, assets.

The page (`index.html`) and the first archive page (`history`) are documents of the page
cache (`pages.documents`), rendered by workers (`pages.html`); routes answer them from the
cache with ETag and Last-Modified. Older archive pages and permalinks render on request.
Every page route asks `_entry`, the one call site of the access check (`engine.access`
through `pages.page_access.guard`). Cached public pages are usually answered before these
routes, by `pages.fastpath`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine import pagedata
from engine.tables import assets, status_pages, utcnow

from .cache import (
    PRIVATE_CACHE_CONTROL,
    PUBLIC_CACHE_CONTROL,
    Document,
    Entry,
    accepts_gzip,
    for_runtime,
    not_modified,
)
from .headers import ASSET_CSP
from .html import ARCHIVE_PAGE, render_archive, render_incident
from .render import snapshot

ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"

# --- serving --------------------------------------------------------------------------------


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


@dataclass(frozen=True)
class _Granted:
    entry: Entry
    access: Any  # engine.access.Access


async def _entry(request: Request, want: str = "html") -> _Granted:
    """The request's page from the cache (rendered on a cold miss), after the access check:
    the single call site of `engine.access` for these routes."""
    from engine.access import Want

    from .page_access import granted_entry

    entry, decision = await granted_entry(request, Want(want))
    if entry is None:
        assert decision.page is not None  # granted_entry's guard raised otherwise
        raise HTTPException(404, f"no status page {decision.page.slug!r}")
    return _Granted(entry, decision)


def _finish(response: Response, granted: _Granted) -> Response:
    from .page_access import finish

    return finish(response, granted.access, cors=True)


PREVIEW_MARK = b"<!--beacon:preview-->"
PREVIEW_BANNER = (
    b'<p class="preview" role="status">Preview: this page is not active yet; '
    b"only its teams' members can see it.</p>"
)


def _previewed(doc: Document, granted: _Granted) -> Document:
    """Members looking at an inactive page see a banner saying so."""
    if not granted.access.preview or PREVIEW_MARK not in doc.body:
        return doc
    body = doc.body.replace(PREVIEW_MARK, PREVIEW_BANNER, 1)
    return Document(body, doc.content_type, f'"p{doc.etag[1:]}', doc.last_modified)


def document_response(request: Request, doc: Document, *, public: bool = True) -> Response:
    """`doc` with its validators, or 304 when the client already has it."""
    headers = {
        "ETag": doc.etag,
        "Last-Modified": doc.last_modified,
        "Cache-Control": PUBLIC_CACHE_CONTROL if public else PRIVATE_CACHE_CONTROL,
    }
    packed = (
        public and doc.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding"))
    )
    if public:
        headers["Access-Control-Allow-Origin"] = "*"
        if doc.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
    else:
        headers["Vary"] = "Cookie, Authorization"
    if packed:
        headers["ETag"] = doc.gzip_etag
        headers["Content-Encoding"] = "gzip"
    if not_modified(
        request.headers.get("if-none-match"), request.headers.get("if-modified-since"), doc
    ):
        headers.pop("Content-Encoding", None)
        return Response(status_code=304, headers=headers)
    full = doc.gzipped if packed and doc.gzipped is not None else doc.body
    response = Response(
        b"" if request.method == "HEAD" else full, headers=headers, media_type=doc.content_type
    )
    if request.method == "HEAD":
        response.headers["content-length"] = str(len(full))
    return response


async def cached_page(request: Request, name: str) -> Response:
    """Serve HTML document `name` of the request's page from the page cache."""
    granted = await _entry(request)
    doc = granted.entry.get(name)
    if doc is None:
        raise HTTPException(404, f"page {granted.entry.slug!r} has no document {name!r}")
    doc = _previewed(doc, granted)
    return _finish(document_response(request, doc, public=granted.entry.public), granted)


async def page_index(request: Request) -> Response:
    return await cached_page(request, "index.html")


async def page_script(request: Request) -> Response:
    """The page's script (pages.html.render_script), from the page cache."""
    from .page_access import serve_document

    return await serve_document(request, "page.js")


async def page_redirect(request: Request) -> Response:
    return Response(status_code=308, headers={"Location": f"/p/{request.path_params['slug']}/"})


async def page_history(request: Request) -> Response:
    before = request.query_params.get("before")
    if not before:
        return await cached_page(request, "history")
    try:
        when = datetime.fromisoformat(before)
    except ValueError:
        raise HTTPException(400, f"before: not an ISO 8601 time: {before!r}") from None
    if when.tzinfo is None:
        raise HTTPException(400, "before: give a time zone (e.g. 2026-11-01T00:00:00+00:00)")
    granted = await _entry(request)
    body = await run_in_threadpool(_render_older, _runtime(request), granted.entry.page_id, when)
    doc = _previewed(Document.make(body, "text/html; charset=utf-8", utcnow()), granted)
    return _finish(document_response(request, doc, public=granted.entry.public), granted)


def _render_older(rt: Any, page_id: int, before: datetime) -> bytes:
    with rt.store.read() as conn:
        snap = snapshot(rt, conn, page_id, utcnow(), days=1)
        found = pagedata.load_incidents(conn, page_id, before=before, limit=ARCHIVE_PAGE + 1)
    return render_archive(snap, found[:ARCHIVE_PAGE], len(found) > ARCHIVE_PAGE)


async def page_incident(request: Request) -> Response:
    granted = await _entry(request)
    body = await run_in_threadpool(
        _render_permalink, _runtime(request), granted.entry.page_id, request.path_params["incident"]
    )
    if body is None:
        raise HTTPException(404, "no such incident on this page")
    doc = _previewed(Document.make(body, "text/html; charset=utf-8", utcnow()), granted)
    return _finish(document_response(request, doc, public=granted.entry.public), granted)


def _render_permalink(rt: Any, page_id: int, public_id: str) -> bytes | None:
    with rt.store.read() as conn:
        incident = pagedata.load_incident(conn, page_id, public_id)
        if incident is None:
            return None
        snap = snapshot(rt, conn, page_id, utcnow(), days=1)
    return render_incident(snap, incident)


async def page_live(request: Request) -> Response:
    """Server-sent events: a message whenever the page's cached version changes (and one on
    connect), so open pages refetch themselves through the cache (`pages.live`)."""
    from engine.access import Want

    from .live import LiveResponse, hub_for
    from .page_access import guard

    granted = await _entry(request, "data")
    rt = _runtime(request)
    hub = hub_for(rt, for_runtime(rt))
    client = request.client.host if request.client else "-"
    public = granted.entry.public and not granted.access.headers
    listener = hub.join(granted.entry.slug, client, granted.entry.version, public=public)

    async def still_allowed() -> bool:
        try:
            await guard(request, Want.DATA)
        except HTTPException:
            return False
        return True

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    response = LiveResponse(hub, listener, None if public else still_allowed, headers)
    return _finish(response, granted)


async def page_asset(request: Request) -> Response:
    """The page's logo or favicon by content hash: immutable, cached for a year."""
    digest = request.path_params["digest"]
    granted = await _entry(request, "data")
    row = await run_in_threadpool(_asset, _runtime(request), granted.entry.page_id, digest)
    if row is None:
        raise HTTPException(404, "no such asset on this page")
    content_type, data = row
    doc = Document(data, content_type, f'"{digest[:20]}"', "")
    # Opened on its own (an SVG is a document), the asset may load and run nothing.
    headers = {
        "ETag": doc.etag,
        "Cache-Control": ASSET_CACHE_CONTROL,
        "Content-Security-Policy": ASSET_CSP,
        "X-Content-Type-Options": "nosniff",
    }
    if not_modified(request.headers.get("if-none-match"), None, doc):
        return _finish(Response(status_code=304, headers=headers), granted)
    return _finish(Response(data, media_type=content_type, headers=headers), granted)


def _asset(rt: Any, page_id: int, digest: str) -> tuple[str, bytes] | None:
    with rt.store.read() as conn:
        row = conn.execute(
            sa.select(assets.c.content_type, assets.c.data)
            .join(
                status_pages,
                sa.or_(
                    status_pages.c.logo_asset_id == assets.c.id,
                    status_pages.c.favicon_asset_id == assets.c.id,
                ),
            )
            .where(status_pages.c.id == page_id)
            .where(assets.c.sha256 == digest)
        ).first()
    return (row.content_type, bytes(row.data)) if row else None


routes: list[BaseRoute] = [
    Route("/p/{slug}", page_redirect, methods=["GET", "HEAD"]),
    Route("/p/{slug}/", page_index, methods=["GET", "HEAD"]),
    Route("/p/{slug}/history", page_history, methods=["GET", "HEAD"]),
    Route("/p/{slug}/page.js", page_script, methods=["GET", "HEAD"]),
    Route("/p/{slug}/incidents/{incident}", page_incident, methods=["GET", "HEAD"]),
    Route("/p/{slug}/live", page_live, methods=["GET"]),
    Route("/p/{slug}/assets/{digest}", page_asset, methods=["GET", "HEAD"]),
]
