"""The status page in HTML: the page, the archive, incident permalinks, live updates, assets.

The page (`index.html`) and the first archive page (`history`) are documents of the page
cache (`pages.documents`), rendered by workers; routes answer them from the cache with
ETag and Last-Modified. Older archive pages and permalinks render on request. Every page
route asks `_entry`, the one call site of the access check (`engine.access` through
`pages.page_access.guard`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from engine import pagedata
from engine.models import ServiceStatus
from engine.pagedata import Incident, PageSnapshot
from engine.tables import assets, status_pages, utcnow

from .cache import PRIVATE_CACHE_CONTROL, PUBLIC_CACHE_CONTROL, Document, Entry, for_runtime
from .render import cold_render

HERE = Path(__file__).parent


def _compact(text: str, comment: str) -> str:
    """The asset without indentation and whole-line comments: every page carries it inline."""
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith(comment))


CSS = _compact((HERE / "static" / "page.css").read_text(), "/*")
JS = _compact((HERE / "static" / "page.js").read_text(), "//")
#: How often an open live-update stream looks at the page's cache version.
LIVE_POLL_SECONDS = 0.25
LIVE_KEEPALIVE_SECONDS = 15.0
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
ARCHIVE_PAGE = 25

STATUS_CODES = {
    ServiceStatus.OPERATIONAL: "o",
    ServiceStatus.UNDER_MAINTENANCE: "m",
    ServiceStatus.DEGRADED: "d",
    ServiceStatus.PARTIAL_OUTAGE: "p",
    ServiceStatus.MAJOR_OUTAGE: "x",
}
STATUS_NAMES = {
    ServiceStatus.OPERATIONAL: "Operational",
    ServiceStatus.UNDER_MAINTENANCE: "Under Maintenance",
    ServiceStatus.DEGRADED: "Degraded Performance",
    ServiceStatus.PARTIAL_OUTAGE: "Partial Outage",
    ServiceStatus.MAJOR_OUTAGE: "Major Outage",
}


# --- rendering ------------------------------------------------------------------------------


def _local(dt: datetime, page: pagedata.PageInfo) -> str:
    local = dt.astimezone(pagedata.page_tz(page.time_zone))
    return local.strftime("%b %d, %Y %H:%M ") + (local.tzname() or "")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        iso=lambda dt: dt.isoformat(),
        local=_local,
        longdate=lambda d: d.strftime("%b %d, %Y"),
        code=lambda s: STATUS_CODES[ServiceStatus(s)],
        status_name=lambda s: STATUS_NAMES[ServiceStatus(s)],
        incident_status=lambda s: str(s).replace("_", " ").capitalize(),
        maintenance_status=lambda s: str(s).replace("_", " ").capitalize(),
    )
    return env


ENV = _environment()


@dataclass(frozen=True)
class Bars:
    """A component's uptime bar, compact: one letter per day, details only where needed."""

    codes: str
    #: "day index:uptime:incident ids" for days below 100 % or with incidents, ";"-joined.
    extra: str
    #: (code, days) runs, drawn without JavaScript.
    runs: tuple[tuple[str, int], ...]
    uptime: str


def pct(value: float | None) -> str:
    if value is None:
        return "no data"
    text = f"{value * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def bars(component: pagedata.Component) -> Bars:
    codes, extra = [], []
    for index, day in enumerate(component.uptime_days):
        codes.append(STATUS_CODES[day.worst] if day.worst else "n")
        below = day.uptime is not None and day.uptime < 0.99995
        if below or day.incidents:
            up = "" if day.uptime is None else pct(day.uptime)[:-1]
            ids = ",".join(i.public_id for i in day.incidents)
            extra.append(f"{index}:{up}:{ids}")
    runs: list[tuple[str, int]] = []
    for code in codes:
        if runs and runs[-1][0] == code:
            runs[-1] = (code, runs[-1][1] + 1)
        else:
            runs.append((code, 1))
    return Bars("".join(codes), ";".join(extra), tuple(runs), pct(component.uptime))


@dataclass(frozen=True)
class _LayoutItem:
    group: pagedata.Group | None
    components: tuple[pagedata.Component, ...]


def _layout(snap: PageSnapshot) -> list[_LayoutItem]:
    """Groups and ungrouped components in page order (a group sits at its first member)."""
    items: list[_LayoutItem] = []
    groups = {g.public_id: g for g in snap.groups}
    placed: set[str] = set()
    for c in snap.components:
        if c.group_id is None:
            items.append(_LayoutItem(None, (c,)))
        elif c.group_id not in placed:
            placed.add(c.group_id)
            group = groups[c.group_id]
            items.append(_LayoutItem(group, snap.in_group(group)))
    return items


def _context(snap: PageSnapshot, root: str) -> dict[str, Any]:
    return {
        "snap": snap,
        "page": snap.page,
        "status": snap.status,
        "root": root,
        "css": CSS,
        "js": JS,
        "names": {c.public_id: c.name for c in snap.components},
    }


def _titles(snap: PageSnapshot) -> str:
    found = {
        i.public_id: i.title for c in snap.components for d in c.uptime_days for i in d.incidents
    }
    # Inside <script> no "<" may appear, whatever the titles say ("</script>", "<!--").
    return json.dumps(found, ensure_ascii=False).replace("<", "\\u003c")


def _days_back(snap: PageSnapshot, days: int) -> list[tuple[date, list[Incident]]]:
    tz = snap.tz
    today = snap.generated_at.astimezone(tz).date()
    by_day: dict[date, list[Incident]] = {}
    for incident in snap.history(days):
        by_day.setdefault(incident.started_at.astimezone(tz).date(), []).append(incident)
    return [(d, by_day.get(d, [])) for d in (today - timedelta(n) for n in range(days))]


def render_index(snap: PageSnapshot) -> bytes:
    """The status page's HTML (document `index.html`)."""
    context = _context(snap, "")
    context.update(
        layout=_layout(snap),
        bars={c.public_id: bars(c) for c in snap.components},
        d0=snap.uptime_days[0].isoformat() if snap.uptime_days else "",
        titles=_titles(snap),
        history=_days_back(snap, pagedata.HISTORY_DAYS),
    )
    return ENV.get_template("page/index.html").render(context).encode()


def _months(snap: PageSnapshot, found: Iterable[Incident]) -> list[tuple[str, list[Incident]]]:
    months: dict[str, list[Incident]] = {}
    for incident in found:
        months.setdefault(incident.started_at.astimezone(snap.tz).strftime("%B %Y"), []).append(
            incident
        )
    return list(months.items())


def render_archive(snap: PageSnapshot, found: tuple[Incident, ...], more: bool) -> bytes:
    context = _context(snap, "")
    older = found[-1].started_at.isoformat() if more and found else ""
    context.update(months=_months(snap, found), older=older)
    return ENV.get_template("page/history.html").render(context).encode()


def render_history(snap: PageSnapshot) -> bytes:
    """The archive's first page (document `history`): the newest incidents, by month."""
    found = snap.incidents[:ARCHIVE_PAGE]
    return render_archive(snap, found, len(snap.incidents) > ARCHIVE_PAGE)


def render_incident(snap: PageSnapshot, incident: Incident) -> bytes:
    context = _context(snap, "../")
    context.update(item=incident)
    return ENV.get_template("page/incident.html").render(context).encode()


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

    from .page_access import guard

    decision = await guard(request, Want(want))
    assert decision.page is not None  # guard raises for a page that does not exist
    slug = decision.page.slug
    rt = _runtime(request)
    entry = for_runtime(rt).get(slug)
    if entry is None:
        entry = await run_in_threadpool(cold_render, rt, slug)
    if entry is None:
        raise HTTPException(404, f"no status page {slug!r}")
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
    if public:
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Vary"] = "Cookie, Authorization"
    if not_modified(
        request.headers.get("if-none-match"), request.headers.get("if-modified-since"), doc
    ):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else doc.body
    response = Response(body, headers=headers, media_type=doc.content_type)
    if request.method == "HEAD":
        response.headers["content-length"] = str(len(doc.body))
    return response


def not_modified(if_none_match: str | None, if_modified_since: str | None, doc: Document) -> bool:
    """RFC 9110: If-None-Match wins; a weak match counts for GET."""
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or doc.etag in tags
    return if_modified_since is not None and if_modified_since == doc.last_modified


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
        snap = pagedata.load_page(conn, page_id, utcnow(), base_url=rt.settings.base_url, days=1)
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
        snap = pagedata.load_page(conn, page_id, utcnow(), base_url=rt.settings.base_url, days=1)
    return render_incident(snap, incident)


async def page_live(request: Request) -> Response:
    """Server-sent events: a message whenever the page's cached version changes (and one on
    connect), so open pages refetch themselves through the cache."""
    granted = await _entry(request, "data")
    slug = granted.entry.slug
    cache = for_runtime(_runtime(request))

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        seen: int | None = None
        idle = 0.0
        while True:
            version = cache.version(slug)
            if version != seen:
                seen = version
                idle = 0.0
                yield f"data: {version}\n\n".encode()
            elif idle >= LIVE_KEEPALIVE_SECONDS:
                idle = 0.0
                yield b": keepalive\n\n"
            await asyncio.sleep(LIVE_POLL_SECONDS)
            idle += LIVE_POLL_SECONDS

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    response = StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
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
    headers = {"ETag": doc.etag, "Cache-Control": ASSET_CACHE_CONTROL}
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
    Route("/p/{slug}/incidents/{incident}", page_incident, methods=["GET", "HEAD"]),
    Route("/p/{slug}/live", page_live, methods=["GET"]),
    Route("/p/{slug}/assets/{digest}", page_asset, methods=["GET", "HEAD"]),
]


# --- the fast path ------------------------------------------------------------------------------


class FastPages:
    """Answers GETs of cached public page documents before routing and the other middleware.

    A public page is the same for everyone, so an anonymous hit needs nothing but the cache:
    this is what lets one process serve pages near a static file server's speed. Anything
    else (query strings, private or inactive pages, cache misses, other paths) goes on to
    the app unchanged. Fast-path hits are not in the access log.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and scope["path"].startswith("/p/")
            and not scope.get("query_string")
        ):
            slug, slash, rest = scope["path"][3:].partition("/")
            if slash:
                entry = for_runtime(scope["app"].state.runtime).get(slug)
                doc = entry.get(rest or "index.html") if entry and entry.public else None
                if doc is not None:
                    await _send_document(scope, send, doc)
                    return
        await self.app(scope, receive, send)


async def _send_document(scope: Any, send: Any, doc: Document) -> None:
    inm = ims = None
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            inm = value.decode("latin-1")
        elif name == b"if-modified-since":
            ims = value.decode("latin-1")
    fresh = not_modified(inm, ims, doc)
    headers = [
        (b"etag", doc.etag.encode()),
        (b"last-modified", doc.last_modified.encode()),
        (b"cache-control", PUBLIC_CACHE_CONTROL.encode()),
        # Public pages' documents may be read from any origin (the v2 JSON is made for it).
        (b"access-control-allow-origin", b"*"),
    ]
    if fresh:
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers += [
        (b"content-type", doc.content_type.encode()),
        (b"content-length", str(len(doc.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    body = b"" if scope["method"] == "HEAD" else doc.body
    await send({"type": "http.response.body", "body": body})
