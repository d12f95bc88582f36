"""What each notice says: the message context and Statuspage's webhook envelope.

A notice is one thing to tell the subscribers of one page (an incident update, a maintenance
step, a component change, a confirmation). `workers.fanout` expands notices into deliveries
and sends them; this module only reads the store to describe them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import incidents as incidents_api
from engine import maintenance as maintenance_api
from engine import pagedata, vault
from engine import subscriber_links as links
from engine import subscribers as subs
from engine.models import COMPONENT_STATUS, OPEN_INCIDENT, STATUS_NAME, Impact, ServiceStatus
from engine.pagedata import shown_on_page
from engine.settings import Settings
from engine.status import page_status
from engine.statuspage import Objects
from engine.tables import (
    assets,
    incident_services,
    incident_updates,
    incidents,
    maintenance_updates,
    maintenance_windows,
    page_services,
    services,
    status_pages,
    subscribers,
    utcnow,
)

#: Causes whose change comes with an update of its own (people hear about that one).
EXPLAINED_CAUSES = {"incident", "maintenance"}


@dataclass(frozen=True)
class Thread:
    """What a notice for people continues (`workers.coalesce`): the incident, window or
    component on one page, the notice's place in it, and what it shows."""

    #: "incident:<id>:page:<page id>", "maintenance:<window id>:page:<page id>",
    #: "component:<service id>:page:<page id>"
    key: str
    #: Order within the thread (update ids; a component change's time in microseconds).
    step: int
    #: A digest of what the message shows: equal digests say the same thing.
    state: str
    #: The digest of what was true before the thread's first step, when that can be said
    #: (a component's old status); None: anything is news.
    before: str | None
    #: What summaries call it ("3 more updates to <title> since ...").
    title: str
    #: The first message goes at once (incidents, maintenance: a person or a damped rule
    #: decided it); else it waits for the window, as a status that flaps back is no news.
    leading: bool


def digest(*parts: Any) -> str:
    """A short stable digest of JSON-able `parts`."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class Notice:
    """One thing to tell the subscribers of one page."""

    key: str  # the dedup prefix: "<what>:<id>:page:<page id>"
    kind: str  # the message templates: incident | maintenance | component | confirm
    page: subs.Page
    page_url: str
    #: The services it is about (a subscriber's filter must meet them); None: all.
    service_keys: set[str] | None
    #: Whether email, SMS and user subscribers hear about it (webhooks always do).
    people: bool
    context: dict[str, Any]
    #: The webhook body after `meta`.
    envelope: dict[str, Any]
    #: Only these subscribers (a confirmation), else every confirmed one of the page.
    only: list[int] | None = None
    #: The page's logo for the email's header, or None (the page's name alone).
    logo_url: str | None = None
    #: What the notice continues for people (None: every notice goes out, e.g. a
    #: confirmation, or one only webhooks hear).
    thread: Thread | None = None


def _page_url(settings: Settings, page: subs.Page) -> str:
    return page.url(settings.base_url, settings.pages_domain)


#: Logo types that mail clients show: not SVG (Gmail and Outlook show nothing) nor WebP.
MAIL_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif"}


def _logo_url(conn: Connection, page: subs.Page, url: str) -> str | None:
    """The absolute URL of a public page's logo on the page's own host (content-hashed, so
    cached for a year and never stale), for the email's header. An absolute URL and not an
    inline (CID) part: a batch of 1,000 emails stays one small request, and Gmail, Apple
    Mail and Outlook.com show remote images, and where a client blocks them the page's name
    beside the logo still says whose message it is (the image's alt text is empty, so it
    is not said twice). A private page's assets need a sign-in that
    a mail client does not have: no logo there."""
    if page.private:
        return None
    row = conn.execute(
        sa.select(assets.c.sha256, assets.c.content_type)
        .join(status_pages, status_pages.c.logo_asset_id == assets.c.id)
        .where(status_pages.c.id == page.id)
    ).first()
    if row is None or row.content_type not in MAIL_IMAGE_TYPES:
        return None
    return f"{url}/assets/{row.sha256}"


def iso(value: datetime | None) -> str | None:
    """An aware time in Statuspage's JSON form (UTC, `Z`)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _shown(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%b %d, %Y %H:%M UTC")


def _page_components(conn: Connection, page_id: int, service_ids: Iterable[int]) -> list[Any]:
    """The page's components of `service_ids` for messages and filters (their Statuspage
    objects come from `_objects`)."""
    return list(
        conn.execute(
            sa.select(
                page_services.c.public_id,
                page_services.c.service_id,
                services.c.key,
                services.c.name,
                services.c.status,
            )
            .join(services, services.c.id == page_services.c.service_id)
            .where(page_services.c.page_id == page_id)
            .where(page_services.c.service_id.in_(sorted(set(service_ids))))
            .order_by(page_services.c.position, page_services.c.id)
        )
    )


def _objects(conn: Connection, settings: Settings, page_id: int) -> Objects:
    """The page's Statuspage objects as the v2 API serialises them now: the webhook's
    incident and component are the API's, from the one serialiser (engine.statuspage)."""
    # One day of uptime: the objects carry none, and 90 days would be read for nothing.
    snap = pagedata.load_page(
        conn,
        page_id,
        utcnow(),
        base_url=settings.base_url,
        pages_domain=settings.pages_domain,
        days=1,
    )
    return Objects(snap, snap.page.url)


def _page_envelope(conn: Connection, page: subs.Page) -> dict[str, Any]:
    """`page {id, status_indicator, status_description}` as the page shows it now."""
    shown = conn.execute(
        sa.select(services.c.id, services.c.status)
        .join(page_services, page_services.c.service_id == services.c.id)
        .where(page_services.c.page_id == page.id)
    ).all()
    statuses = [ServiceStatus(row.status) for row in shown]
    impacts = [
        Impact(r.impact_override or r.impact)
        for r in conn.execute(
            sa.select(incidents.c.impact, incidents.c.impact_override)
            .where(incidents.c.status.in_(OPEN_INCIDENT))
            .where(
                shown_on_page(
                    page.team_ids,
                    [row.id for row in shown],
                    incident_services,
                    "incident_id",
                    incidents,
                )
            )
        )
    ]
    status = page_status(statuses, impacts)
    return {
        "id": page.public_id,
        "status_indicator": str(status.indicator),
        "status_description": status.description,
    }


def _service_keys(components: Sequence[Any], had_services: bool) -> set[str] | None:
    return {c.key for c in components} if had_services else None


def incident_notices(conn: Connection, settings: Settings, update_id: int) -> list[Notice]:
    """One notice per active page that shows the update's incident."""
    update = conn.execute(
        sa.select(incident_updates).where(incident_updates.c.id == update_id)
    ).first()
    if update is None or not update.deliver_notifications:
        return []
    incident = conn.execute(sa.select(incidents).where(incidents.c.id == update.incident_id)).one()
    affected = [int(a["service_id"]) for a in (update.affected or [])]
    service_ids = sorted(set(incidents_api.service_ids_of(conn, incident.id)) | set(affected))
    notices = []
    for page_id in subs.pages_showing(conn, incident.team_id, service_ids):
        page = subs.page_by_id(conn, page_id)
        assert page is not None
        url = _page_url(settings, page)
        components = _page_components(conn, page.id, service_ids)
        incident_url = f"{url}/incidents/{incident.public_id}"
        objects = _objects(conn, settings, page.id)
        # The snapshot holds recent and open incidents; an older one is read on its own.
        shown = next((i for i in objects.snap.incidents if i.id == incident.id), None)
        shown = shown or pagedata.load_incident(conn, page.id, incident.public_id)
        if shown is None:  # pages_showing said the page shows it: not in this transaction
            continue
        body = objects.incident(shown)
        notices.append(
            Notice(
                key=f"incident-update:{update.id}:page:{page.id}",
                kind="incident",
                page=page,
                page_url=url,
                logo_url=_logo_url(conn, page, url),
                service_keys=_service_keys(components, bool(service_ids)),
                people=True,
                context={
                    "incident": {"title": incident.title, "url": incident_url},
                    "update": {
                        "status": update.status,
                        "status_name": str(update.status).replace("_", " ").capitalize(),
                        "body": update.body,
                        "display_at": _shown(update.display_at),
                    },
                    "components": [
                        {"name": c.name, "status_name": STATUS_NAME[ServiceStatus(c.status)]}
                        for c in components
                    ],
                },
                envelope={"page": _page_envelope(conn, page), "incident": body},
                thread=Thread(
                    key=f"incident:{incident.id}:page:{page.id}",
                    step=update.id,
                    state=digest(
                        incident.title,
                        update.status,
                        update.body,
                        [(c.name, c.status) for c in components],
                    ),
                    before=None,
                    title=incident.title,
                    leading=True,
                ),
            )
        )
    return notices


def maintenance_notices(conn: Connection, settings: Settings, update_id: int) -> list[Notice]:
    """One notice per active page that shows the update's maintenance window."""
    update = conn.execute(
        sa.select(maintenance_updates).where(maintenance_updates.c.id == update_id)
    ).first()
    if update is None:
        return []
    window = conn.execute(
        sa.select(maintenance_windows).where(maintenance_windows.c.id == update.window_id)
    ).one()
    if not window.notify:
        return []
    service_ids = maintenance_api.service_ids_of(conn, window.id)
    notices = []
    for page_id in subs.pages_showing(conn, window.team_id, service_ids):
        page = subs.page_by_id(conn, page_id)
        assert page is not None
        url = _page_url(settings, page)
        components = _page_components(conn, page.id, service_ids)
        objects = _objects(conn, settings, page.id)
        found = next((m for m in objects.snap.maintenances if m.id == window.id), None)
        found = found or pagedata.load_maintenance(conn, page.id, window.public_id)
        if found is None:
            continue
        body = objects.maintenance(found)
        notices.append(
            Notice(
                key=f"maintenance-update:{update.id}:page:{page.id}",
                kind="maintenance",
                page=page,
                page_url=url,
                logo_url=_logo_url(conn, page, url),
                service_keys=_service_keys(components, bool(service_ids)),
                people=True,
                context={
                    "window": {
                        "title": window.title,
                        "starts": _shown(window.starts_at),
                        "ends": _shown(window.ends_at),
                    },
                    "update": {
                        "status": update.status,
                        "status_name": str(update.status).replace("_", " ").capitalize(),
                        "body": update.body,
                    },
                    "components": [{"name": c.name} for c in components],
                },
                envelope={"page": _page_envelope(conn, page), "incident": body},
                thread=Thread(
                    key=f"maintenance:{window.id}:page:{page.id}",
                    step=update.id,
                    state=digest(
                        window.title, update.status, update.body, window.starts_at, window.ends_at
                    ),
                    before=None,
                    title=window.title,
                    leading=True,
                ),
            )
        )
    return notices


def component_notices(
    conn: Connection, settings: Settings, payload: dict[str, Any]
) -> list[Notice]:
    """One notice per change and active page that has the changed service as a component."""
    at = datetime.fromisoformat(str(payload["at"]))
    stamp = int(at.timestamp() * 1_000_000)
    notices = []
    # One snapshot per page, however many of its services this step changed.
    pages: dict[int, Objects] = {}
    for service_id, old, new in payload.get("changes", []):
        # People hear incidents and maintenance; a bare change only where the page opts in,
        # and never one that an incident or window of the same step tells them about.
        bare = payload.get("cause_kind") not in EXPLAINED_CAUSES and not subs.explained(
            conn, int(service_id), at
        )
        for page_id in subs.pages_with_service(conn, int(service_id)):
            page = subs.page_by_id(conn, page_id)
            assert page is not None
            people = bare and page.notify_component_changes
            (row,) = _page_components(conn, page.id, [int(service_id)])
            objects = pages.get(page.id)
            if objects is None:
                objects = pages[page.id] = _objects(conn, settings, page.id)
            component = dict(objects.components_by_id()[row.public_id])
            # The status at the change, not whatever it is by the time this runs (a retry,
            # a second change since): the component as the v2 API showed it then.
            component["status"] = COMPONENT_STATUS[ServiceStatus(new)]
            component["updated_at"] = objects.ts(at)
            key = f"component-update:{service_id}:{stamp}:page:{page.id}"
            url = _page_url(settings, page)
            notices.append(
                Notice(
                    key=key,
                    kind="component",
                    page=page,
                    page_url=url,
                    logo_url=_logo_url(conn, page, url),
                    service_keys={row.key},
                    people=people,
                    context={
                        "component": {
                            "name": row.name,
                            "old_name": STATUS_NAME[ServiceStatus(old)],
                            "new_name": STATUS_NAME[ServiceStatus(new)],
                        },
                        "at": _shown(at),
                    },
                    envelope={
                        "page": _page_envelope(conn, page),
                        "component": component,
                        "component_update": {
                            "old_status": COMPONENT_STATUS[ServiceStatus(old)],
                            "new_status": COMPONENT_STATUS[ServiceStatus(new)],
                            "created_at": iso(at),
                            "component_type": "Component",
                            "id": f"{row.public_id}{stamp:x}"[-24:],
                            "component_id": row.public_id,
                        },
                    },
                    thread=Thread(
                        key=f"component:{service_id}:page:{page.id}",
                        step=stamp,
                        state=digest(new),
                        before=digest(old),
                        title=row.name,
                        leading=False,
                    )
                    if people
                    else None,
                )
            )
    return notices


def confirm_notices(conn: Connection, settings: Settings, payload: dict[str, Any]) -> list[Notice]:
    """The confirmation message for one subscriber, unless it is confirmed or gone."""
    row = conn.execute(
        sa.select(subscribers).where(subscribers.c.id == int(payload["subscriber_id"]))
    ).first()
    token = links.confirm_token(vault.of(conn), row) if row is not None else None
    if row is None or row.confirmed or token is None:
        return []
    page = subs.page_by_id(conn, row.page_id)
    assert page is not None
    url = _page_url(settings, page)
    return [
        Notice(
            key=f"confirm:{row.id}:{payload.get('nonce', '')}",
            kind="confirm",
            page=page,
            page_url=url,
            logo_url=_logo_url(conn, page, url),
            service_keys=None,
            people=True,
            context={
                # Made again from the secret key: the store keeps no token.
                "confirm_url": f"{url}/subscriptions/confirm/{token}",
                "services": row.services or [],
            },
            envelope={},
            only=[row.id],
        )
    ]
