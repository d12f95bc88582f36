"""The documents rendered for every page after each change: an explicit registry.

Each entry maps a document name (its path under the page's root, `/p/{slug}/<name>`, with
`index.html` for the page itself) to a renderer `"module:function"`, imported lazily. A
renderer takes the page's `PageSnapshot` and returns the document's bytes; it must be pure
(no store, no clock: everything it needs is in the snapshot). The render job writes every
document into the page cache with its ETag, so routes serve them without the database.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache

from engine.pagedata import PageSnapshot

Renderer = Callable[[PageSnapshot], bytes]

#: Document name -> "module:function". Other parts add their documents here, one line each.
RENDERERS: dict[str, str] = {
    "index.html": "pages.html:render_index",
    "page.js": "pages.html:render_script",
    "history": "pages.html:render_history",
    "api/v2/summary.json": "pages.statuspage_api:render_summary",
    "api/v2/status.json": "pages.statuspage_api:render_status",
    "api/v2/components.json": "pages.statuspage_api:render_components",
    "api/v2/incidents.json": "pages.statuspage_api:render_incidents",
    "api/v2/incidents/unresolved.json": "pages.statuspage_api:render_unresolved",
    "api/v2/scheduled-maintenances.json": "pages.statuspage_api:render_maintenances",
    "api/v2/scheduled-maintenances/upcoming.json": "pages.statuspage_api:render_upcoming",
    "api/v2/scheduled-maintenances/active.json": "pages.statuspage_api:render_active",
    "history.rss": "pages.feeds:render_rss",
    "history.atom": "pages.feeds:render_atom",
    "maintenance.ics": "pages.feeds:render_calendar",
    "badge.svg": "pages.badge:render_badge",
}

CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "ics": "text/calendar; charset=utf-8",
    "svg": "image/svg+xml",
    "txt": "text/plain; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
}


def content_type(name: str) -> str:
    """The content type of a document, from its name's extension."""
    ext = name.rsplit(".", 1)[-1] if "." in name else "html"
    return CONTENT_TYPES.get(ext, "application/octet-stream")


@cache
def renderer(name: str) -> Renderer:
    """The renderer registered for document `name`; KeyError for an unknown name."""
    module, _, func = RENDERERS[name].partition(":")
    found: Renderer = getattr(importlib.import_module(module), func)
    return found


def render_all(snapshot: PageSnapshot) -> dict[str, tuple[bytes, str]]:
    """Every registered document of the page: name -> (bytes, content type)."""
    return {name: (renderer(name)(snapshot), content_type(name)) for name in RENDERERS}
