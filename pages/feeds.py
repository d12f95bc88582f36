"""Feeds of a page: RSS 2.0 and Atom of its incidents, an iCalendar of its maintenances.

All three are pure functions of a `PageSnapshot` and the page's public URL. The XML feeds
are built with ElementTree, so whatever an incident's title or message holds, the feed is
well-formed; the calendar follows RFC 5545 (CRLF lines, escaped text, lines folded at 75
octets) so calendar apps can subscribe to it.
"""

from __future__ import annotations

import html
import sqlite3
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import feed_tokens
from engine.access import Want
from engine.pagedata import Incident, Maintenance, PageSnapshot
from engine.tables import utcnow

from .auth import Principal, principal_for_user
from .page_access import granted_entry, serve_document
from .public import document_response

ATOM_NS = "http://www.w3.org/2005/Atom"
RECENT = 50
MAINTENANCE_STATUS = {
    "scheduled": "TENTATIVE",
    "in_progress": "CONFIRMED",
    "verifying": "CONFIRMED",
    "completed": "CONFIRMED",
}


def feed_title(name: str) -> str:
    """ "Northwind Status - Incident History", "ACME Status - Incident History": Statuspage's
    feed title, without doubling a "Status" the page's name already ends with."""
    return f"{status_name(name)} - Incident History"


def status_name(name: str) -> str:
    """The page's name as "<name> Status", unless it already says so."""
    return name if name.strip().lower().endswith("status") else f"{name} Status"


def _recent(snap: PageSnapshot) -> list[Incident]:
    return sorted(snap.incidents, key=lambda i: (i.started_at, i.id), reverse=True)[:RECENT]


def _last_change(snap: PageSnapshot) -> datetime:
    return max([snap.page.updated_at, *(i.updated_at for i in snap.incidents)])


def incident_html(incident: Incident) -> str:
    """The incident's timeline as a small HTML fragment (feed readers render it)."""
    parts = []
    for update in incident.updates:
        when = update.display_at.astimezone(UTC).strftime("%b %d, %H:%M UTC")
        parts.append(
            f"<p><small>{html.escape(when)}</small><br>"
            f"<strong>{html.escape(str(update.status).title())}</strong> - "
            f"{html.escape(update.body)}</p>"
        )
    return "".join(parts) or f"<p>{html.escape(str(incident.status).title())}</p>"


def _xml(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def rss(snap: PageSnapshot, url: str) -> bytes:
    """RSS 2.0 of the page's 50 most recent incidents, newest first."""
    # Namespaces as literal attributes: ElementTree's prefix registry is process-global.
    root = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM_NS})
    channel = ET.SubElement(root, "channel")
    ET.SubElement(channel, "title").text = feed_title(snap.page.name)
    ET.SubElement(channel, "link").text = url
    description = f"Incidents reported on {status_name(snap.page.name)}"
    ET.SubElement(channel, "description").text = description
    ET.SubElement(
        channel,
        "atom:link",
        {"href": f"{url}/history.rss", "rel": "self", "type": "application/rss+xml"},
    )
    ET.SubElement(channel, "lastBuildDate").text = format_datetime(
        _last_change(snap).astimezone(UTC), usegmt=True
    )
    for incident in _recent(snap):
        item = ET.SubElement(channel, "item")
        link = f"{url}/incidents/{incident.public_id}"
        ET.SubElement(item, "title").text = incident.title
        ET.SubElement(item, "link").text = link
        ET.SubElement(item, "guid", {"isPermaLink": "true"}).text = link
        ET.SubElement(item, "pubDate").text = format_datetime(
            incident.started_at.astimezone(UTC), usegmt=True
        )
        ET.SubElement(item, "description").text = incident_html(incident)
    return _xml(root)


def _atom_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def atom(snap: PageSnapshot, url: str) -> bytes:
    """Atom (RFC 4287) of the page's 50 most recent incidents, newest first."""

    def sub(parent: ET.Element, tag: str, attrs: dict[str, str] | None = None) -> ET.Element:
        return ET.SubElement(parent, tag, attrs or {})

    feed = ET.Element("feed", {"xmlns": ATOM_NS})
    sub(feed, "id").text = f"{url}/history.atom"
    sub(feed, "title").text = feed_title(snap.page.name)
    sub(feed, "updated").text = _atom_time(_last_change(snap))
    sub(feed, "link", {"rel": "alternate", "type": "text/html", "href": url})
    sub(
        feed, "link", {"rel": "self", "type": "application/atom+xml", "href": f"{url}/history.atom"}
    )
    # RFC 4287 wants an author on the feed when entries have none.
    sub(sub(feed, "author"), "name").text = snap.page.name
    for incident in _recent(snap):
        link = f"{url}/incidents/{incident.public_id}"
        entry = sub(feed, "entry")
        sub(entry, "id").text = link
        sub(entry, "title").text = incident.title
        sub(entry, "published").text = _atom_time(incident.started_at)
        sub(entry, "updated").text = _atom_time(incident.updated_at)
        sub(entry, "link", {"rel": "alternate", "type": "text/html", "href": link})
        sub(entry, "content", {"type": "html"}).text = incident_html(incident)
    return _xml(feed)


# --- iCalendar (RFC 5545) ---------------------------------------------------------------------


def ical_escape(text: str) -> str:
    """A TEXT value: backslash, semicolon and comma escaped, newlines as `\\n`."""
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def fold(line: str) -> str:
    """Fold a content line at 75 octets (RFC 5545 3.1) without splitting a UTF-8 character."""
    out: list[str] = []
    current, size, limit = "", 0, 75
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            out.append(current)
            current, size, limit = " ", 1, 75
        current += char
        size += width
    out.append(current)
    return "\r\n".join(out)


def _ical_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _event(maint: Maintenance, snap: PageSnapshot, url: str, host: str) -> list[str]:
    names = {c.public_id: c.name for c in snap.components}
    affected = ", ".join(names[c] for c in maint.component_ids if c in names)
    description = maint.message
    if affected:
        description = f"{description}\n\nAffected: {affected}".strip()
    return [
        "BEGIN:VEVENT",
        f"UID:{maint.public_id}@{host}",
        f"DTSTAMP:{_ical_time(maint.updated_at)}",
        f"CREATED:{_ical_time(maint.created_at)}",
        f"LAST-MODIFIED:{_ical_time(maint.updated_at)}",
        f"DTSTART:{_ical_time(maint.starts_at)}",
        f"DTEND:{_ical_time(maint.ends_at)}",
        f"SUMMARY:{ical_escape(maint.title)}",
        f"DESCRIPTION:{ical_escape(description)}",
        f"STATUS:{MAINTENANCE_STATUS.get(maint.status, 'CONFIRMED')}",
        "TRANSP:TRANSPARENT",
        f"URL:{url}",
        "END:VEVENT",
    ]


def calendar(snap: PageSnapshot, url: str) -> bytes:
    """The page's maintenances (upcoming, in progress and recent) as a subscribable
    iCalendar."""
    host = urlsplit(url).hostname or "beacon"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Beacon//Status page maintenance//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{ical_escape(status_name(snap.page.name) + ' - Maintenance')}",
        f"X-WR-TIMEZONE:{snap.page.time_zone}",
        # Subscribers' apps re-read the calendar this often (RFC 7986 and the de facto X-).
        "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
        "X-PUBLISHED-TTL:PT1H",
    ]
    for maint in snap.maintenances:
        lines += _event(maint, snap, url, host)
    lines.append("END:VCALENDAR")
    return ("\r\n".join(fold(line) for line in lines) + "\r\n").encode()


# --- page-cache documents and routes -------------------------------------------------------


def render_rss(snap: PageSnapshot) -> bytes:
    return rss(snap, snap.page.url)


def render_atom(snap: PageSnapshot) -> bytes:
    return atom(snap, snap.page.url)


def render_calendar(snap: PageSnapshot) -> bytes:
    return calendar(snap, snap.page.url)


async def rss_feed(request: Request) -> Response:
    return await serve_document(request, "history.rss", cors=True)


async def atom_feed(request: Request) -> Response:
    return await serve_document(request, "history.atom", cors=True)


async def maintenance_calendar(request: Request) -> Response:
    return await serve_document(request, "maintenance.ics", cors=True)


# --- personal feed links (engine.feed_tokens) ----------------------------------------------

#: What a refused feed link answers, whatever the reason (unknown, revoked, another page's,
#: its user no longer a member): the same 404, so a link discloses nothing.
_NO_LINK = "no such feed link (it may have been revoked)"
_NEVER_STORED = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}


def _link_holder(request: Request, token: str) -> tuple[feed_tokens.Holder, Principal] | None:
    store = request.app.state.store
    with store.read() as conn:
        found = feed_tokens.holder(conn, token)
    viewer = principal_for_user(store, found.user_id) if found is not None else None
    if found is None or viewer is None:
        return None
    now = utcnow()
    if feed_tokens.stale(found.last_used_at, now):
        try:  # a hint: written when the write lock is free at once, else on a later use
            with store.begin(wait=0) as conn:
                feed_tokens.touch(conn, found.token_id, now)
        except (DBAPIError, sqlite3.Error):
            pass
    return found, viewer


async def _linked_document(request: Request, name: str) -> Response:
    """Document `name` of the page, for the user whose feed link the path carries: asked of
    engine.access as that user, and only on the page the link was made for."""
    held = await run_in_threadpool(_link_holder, request, request.path_params["token"])
    if held is None:
        raise HTTPException(404, _NO_LINK, headers=_NEVER_STORED)
    found, viewer = held
    request.state.principal = viewer  # pages.auth.principal: the link's user, not the caller
    try:
        entry, decision = await granted_entry(request, Want.DATA)
    except HTTPException:
        raise HTTPException(404, _NO_LINK, headers=_NEVER_STORED) from None
    assert decision.page is not None
    doc = entry.get(name) if entry is not None else None
    if decision.page.id != found.page_id or doc is None:
        raise HTTPException(404, _NO_LINK, headers=_NEVER_STORED)
    response = document_response(request, doc, public=False)
    response.headers.update(_NEVER_STORED)
    return response


async def linked_rss(request: Request) -> Response:
    return await _linked_document(request, "history.rss")


async def linked_atom(request: Request) -> Response:
    return await _linked_document(request, "history.atom")


async def linked_calendar(request: Request) -> Response:
    return await _linked_document(request, "maintenance.ics")


#: A personal feed link's path below the page (`/p/<slug>` + this + a document's name).
LINK_PATH = "/feeds/{token}/"

routes = [
    Route("/p/{slug}/history.rss", rss_feed, methods=["GET", "HEAD"]),
    Route("/p/{slug}/history.atom", atom_feed, methods=["GET", "HEAD"]),
    Route("/p/{slug}/maintenance.ics", maintenance_calendar, methods=["GET", "HEAD"]),
    Route("/p/{slug}/feeds/{token}/history.rss", linked_rss, methods=["GET", "HEAD"]),
    Route("/p/{slug}/feeds/{token}/history.atom", linked_atom, methods=["GET", "HEAD"]),
    Route("/p/{slug}/feeds/{token}/maintenance.ics", linked_calendar, methods=["GET", "HEAD"]),
]
