"""The Statuspage v2 compatible public API: `/p/{slug}/api/v2/...` (DESIGN.md, "Statuspage
v2 mapping").

Each document is a pure function of a `PageSnapshot` and the page's public URL, with
Statuspage's field names, types and enum values, so tools written for Atlassian Statuspage
(status widgets, aggregators, Terraform data sources) read Beacon unchanged. The objects in
them (components, incidents, maintenances) are `engine.statuspage`'s, which the subscriber
webhook sends too; times are in the page's time zone with milliseconds, as Statuspage
writes them (`Z` on UTC pages).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.pagedata import Incident, Maintenance, PageSnapshot
from engine.statuspage import Json, Objects

from .page_access import serve_document

#: `incidents.json` and `scheduled-maintenances.json` list this many, newest first.
RECENT = 50


class Document(Objects):
    """Serialises one snapshot's documents; the objects in them are `engine.statuspage`'s,
    the same the subscriber webhook sends."""

    # --- page and status ------------------------------------------------------------------

    def updated_at(self) -> datetime:
        """The page's last change: its own, a component's, an incident's or a maintenance's."""
        snap = self.snap
        times = [snap.page.updated_at]
        times += [c.updated_at for c in snap.components]
        times += [i.updated_at for i in snap.incidents]
        times += [m.updated_at for m in snap.maintenances]
        return max(times)

    def page(self) -> Json:
        return {
            "id": self.page_id,
            "name": self.snap.page.name,
            "url": self.url,
            "time_zone": self.snap.page.time_zone,
            "updated_at": self.ts(self.updated_at()),
        }

    def status(self) -> Json:
        return {
            "indicator": str(self.snap.status.indicator),
            "description": self.snap.status.description,
        }

    # --- the eight documents ----------------------------------------------------------------

    def upcoming(self) -> list[Maintenance]:
        return sorted(self.snap.upcoming_maintenances, key=lambda m: m.starts_at)

    def active(self) -> list[Maintenance]:
        return sorted(self.snap.active_maintenances, key=lambda m: m.starts_at)

    def recent_incidents(self) -> list[Incident]:
        ordered = sorted(self.snap.incidents, key=lambda i: (i.started_at, i.id), reverse=True)
        return ordered[:RECENT]

    def summary(self) -> Json:
        return {
            "page": self.page(),
            "components": self.components(),
            "incidents": self.incidents(self.snap.open_incidents),
            "scheduled_maintenances": self.maintenances([*self.active(), *self.upcoming()]),
            "status": self.status(),
        }


def _recent_maintenances(doc: Document) -> list[Maintenance]:
    ordered = sorted(doc.snap.maintenances, key=lambda m: (m.starts_at, m.id), reverse=True)
    return ordered[:RECENT]


#: Document name -> what it holds, for a page snapshot and its public URL.
DOCUMENTS: dict[str, Callable[[Document], Json]] = {
    "summary.json": Document.summary,
    "status.json": lambda d: {"page": d.page(), "status": d.status()},
    "components.json": lambda d: {"page": d.page(), "components": d.components()},
    "incidents.json": lambda d: {"page": d.page(), "incidents": d.incidents(d.recent_incidents())},
    "incidents/unresolved.json": lambda d: {
        "page": d.page(),
        "incidents": d.incidents(d.snap.open_incidents),
    },
    "scheduled-maintenances.json": lambda d: {
        "page": d.page(),
        "scheduled_maintenances": d.maintenances(_recent_maintenances(d)),
    },
    "scheduled-maintenances/upcoming.json": lambda d: {
        "page": d.page(),
        "scheduled_maintenances": d.maintenances(d.upcoming()),
    },
    "scheduled-maintenances/active.json": lambda d: {
        "page": d.page(),
        "scheduled_maintenances": d.maintenances(d.active()),
    },
}


def render(name: str, snap: PageSnapshot, url: str) -> bytes:
    """The v2 document `name` (`summary.json`, ...) for `snap`, as UTF-8 JSON."""
    body = DOCUMENTS[name](Document(snap, url))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# --- page-cache documents and routes -------------------------------------------------------
# Each document is registered in pages.documents.RENDERERS under "api/v2/<name>", rendered
# with the page after every change and served from the page cache.


def render_summary(snap: PageSnapshot) -> bytes:
    return render("summary.json", snap, snap.page.url)


def render_status(snap: PageSnapshot) -> bytes:
    return render("status.json", snap, snap.page.url)


def render_components(snap: PageSnapshot) -> bytes:
    return render("components.json", snap, snap.page.url)


def render_incidents(snap: PageSnapshot) -> bytes:
    return render("incidents.json", snap, snap.page.url)


def render_unresolved(snap: PageSnapshot) -> bytes:
    return render("incidents/unresolved.json", snap, snap.page.url)


def render_maintenances(snap: PageSnapshot) -> bytes:
    return render("scheduled-maintenances.json", snap, snap.page.url)


def render_upcoming(snap: PageSnapshot) -> bytes:
    return render("scheduled-maintenances/upcoming.json", snap, snap.page.url)


def render_active(snap: PageSnapshot) -> bytes:
    return render("scheduled-maintenances/active.json", snap, snap.page.url)


def _endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await serve_document(request, f"api/v2/{name}", cors=True)

    endpoint.__name__ = "v2_" + name.replace("/", "_").replace("-", "_").replace(".json", "")
    return endpoint


routes = [
    Route(f"/p/{{slug}}/api/v2/{name}", _endpoint(name), methods=["GET", "HEAD"])
    for name in DOCUMENTS
]
