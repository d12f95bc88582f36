"""Tell a page's subscribers: incident and maintenance updates, component changes, and the
confirmation message of a new email or SMS subscription.

Outbox kinds (payloads): `notify.incident_update` {"update_id"}, `notify.maintenance_update`
{"update_id"}, `notify.component_update` {"cause_kind", "at", "changes": [[service id, old,
new]]}, `notify.subscriber_confirm` {"subscriber_id", "nonce"}.

One handler run turns each payload into *notices* (one per page that shows the change),
expands every notice into `deliveries` rows in batches (`INSERT ... ON CONFLICT DO NOTHING`
on a deterministic dedup key, so running twice adds nothing) and then sends the pending ones
from a small thread pool: no RQ job per subscriber. A delivery is sent only by whoever moves
it from pending to sending ("mark sending if pending", per batch, with RETURNING), so a
repeated or concurrent run never sends twice. A temporary failure puts the delivery back to
pending and makes the handler raise, so the outbox retries the whole payload with its backoff
(and only the pending deliveries go out again); a permanent one marks it failed and disables
the subscriber with the reason.

Who hears what: incident and maintenance updates go to every subscriber following one of the
affected services on the page; component changes go to webhook subscribers always, and to
people (email, SMS, private-page users) only when no incident or maintenance update already
tells them (a rule, an override or its expiry changed the status).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from adapters.channels import ChannelError, Context, Message, get_channel
from engine import subscribers as subs
from engine.incidents import NOTIFY_UPDATE as INCIDENT_UPDATE
from engine.maintenance import NOTIFY_UPDATE as MAINTENANCE_UPDATE
from engine.models import Impact, ServiceStatus, SubscriberChannel
from engine.settings import Settings
from engine.status import NOTIFY_COMPONENTS as COMPONENT_UPDATE
from engine.status import page_status
from engine.tables import (
    deliveries,
    incident_services,
    incident_updates,
    incidents,
    maintenance_services,
    maintenance_updates,
    maintenance_windows,
    page_groups,
    page_services,
    services,
    subscribers,
    users,
    utcnow,
)

from . import messages
from .notify import SENDING_LEASE, DeliveryRetry, channel_module, context
from .runtime import Runtime

log = logging.getLogger(__name__)

SUBSCRIBER_CONFIRM = "notify.subscriber_confirm"
__all__ = [
    "COMPONENT_UPDATE",
    "INCIDENT_UPDATE",
    "MAINTENANCE_UPDATE",
    "SUBSCRIBER_CONFIRM",
    "handle_component_update",
    "handle_incident_update",
    "handle_maintenance_update",
    "handle_subscriber_confirm",
]
#: Subscribers read and delivery rows written per transaction while expanding.
EXPAND_BATCH = 500
#: Deliveries claimed (and their outcomes recorded) per transaction while sending.
SEND_BATCH = 100
#: Concurrent sends: providers answer in 50-500 ms, so sending one by one would make a page
#: with thousands of subscribers wait minutes.
SEND_THREADS = 8
DELIVERY_KIND = "subscriber"
COMPONENT_STATUS = {
    ServiceStatus.OPERATIONAL: "operational",
    ServiceStatus.UNDER_MAINTENANCE: "under_maintenance",
    ServiceStatus.DEGRADED: "degraded_performance",
    ServiceStatus.PARTIAL_OUTAGE: "partial_outage",
    ServiceStatus.MAJOR_OUTAGE: "major_outage",
}
STATUS_NAME = {
    ServiceStatus.OPERATIONAL: "Operational",
    ServiceStatus.UNDER_MAINTENANCE: "Under Maintenance",
    ServiceStatus.DEGRADED: "Degraded Performance",
    ServiceStatus.PARTIAL_OUTAGE: "Partial Outage",
    ServiceStatus.MAJOR_OUTAGE: "Major Outage",
}
#: Causes whose change comes with an update of its own (people hear about that one).
EXPLAINED_CAUSES = {"incident", "maintenance"}


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


# --- handlers -------------------------------------------------------------------------------


def handle_incident_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about incident updates with `deliver_notifications`."""
    ids = sorted({int(p["update_id"]) for p in payloads})
    with rt.store.read() as conn:
        notices = [n for i in ids for n in incident_notices(conn, rt.settings, i)]
    deliver(rt, notices)


def handle_maintenance_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about the steps of maintenance windows with `notify`."""
    ids = sorted({int(p["update_id"]) for p in payloads})
    with rt.store.read() as conn:
        notices = [n for i in ids for n in maintenance_notices(conn, rt.settings, i)]
    deliver(rt, notices)


def handle_component_update(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Tell subscribers about component status changes on active pages."""
    with rt.store.read() as conn:
        notices = [n for p in payloads for n in component_notices(conn, rt.settings, p)]
    deliver(rt, notices)


def handle_subscriber_confirm(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """Send the double opt-in message to new email and SMS subscribers."""
    with rt.store.read() as conn:
        notices = [n for p in payloads for n in confirm_notices(conn, rt.settings, p)]
    deliver(rt, notices)


def deliver(rt: Runtime, notices: Sequence[Notice]) -> None:
    """Expand and send every notice; raises `DeliveryRetry` if some sends failed for now."""
    ctx = context(rt.settings)
    retry: list[str] = []
    for notice in notices:
        expand(rt, notice)
        retry += send_pending(rt, notice, ctx)
    if retry:
        raise DeliveryRetry(f"{len(retry)} deliveries failed for now: {'; '.join(retry[:3])}")


# --- notices ----------------------------------------------------------------------------------


def _page_url(settings: Settings, page: subs.Page) -> str:
    return f"{settings.base_url}/p/{page.slug}"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _shown(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%b %d, %Y %H:%M UTC")


def _page_components(conn: Connection, page_id: int, service_ids: Iterable[int]) -> list[Any]:
    return list(
        conn.execute(
            sa.select(
                page_services.c.public_id,
                page_services.c.service_id,
                page_services.c.position,
                page_services.c.created_at,
                page_groups.c.public_id.label("group_public_id"),
                services.c.key,
                services.c.name,
                services.c.description,
                services.c.status,
                services.c.status_since,
            )
            .join(services, services.c.id == page_services.c.service_id)
            .outerjoin(page_groups, page_groups.c.id == page_services.c.group_id)
            .where(page_services.c.page_id == page_id)
            .where(page_services.c.service_id.in_(sorted(set(service_ids))))
            .order_by(page_services.c.position, page_services.c.id)
        )
    )


def _component(row: Any, page: subs.Page) -> dict[str, Any]:
    """A component in Statuspage's field names."""
    return {
        "id": row.public_id,
        "name": row.name,
        "status": COMPONENT_STATUS[ServiceStatus(row.status)],
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.status_since),
        "position": row.position,
        "description": row.description or None,
        "showcase": True,
        "start_date": None,
        "group_id": row.group_public_id,
        "page_id": page.public_id,
        "group": False,
        "only_show_if_degraded": False,
    }


def _page_envelope(conn: Connection, page: subs.Page) -> dict[str, Any]:
    """`page {id, status_indicator, status_description}` as the page shows it now."""
    statuses = [
        ServiceStatus(s)
        for s in conn.execute(
            sa.select(services.c.status)
            .join(page_services, page_services.c.service_id == services.c.id)
            .where(page_services.c.page_id == page.id)
        ).scalars()
    ]
    page_service_ids = sa.select(page_services.c.service_id).where(
        page_services.c.page_id == page.id
    )
    shown = sa.or_(
        sa.exists().where(
            incident_services.c.incident_id == incidents.c.id,
            incident_services.c.service_id.in_(page_service_ids),
        ),
        ~sa.exists().where(incident_services.c.incident_id == incidents.c.id),
    )
    impacts = [
        Impact(r.impact_override or r.impact)
        for r in conn.execute(
            sa.select(incidents.c.impact, incidents.c.impact_override)
            .where(incidents.c.team_id.in_(sorted(page.team_ids)))
            .where(incidents.c.status.notin_(["resolved", "postmortem"]))
            .where(shown)
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
    service_ids = sorted(set(subs.incident_service_ids(conn, incident.id)) | set(affected))
    all_updates = list(
        conn.execute(
            sa.select(incident_updates)
            .where(incident_updates.c.incident_id == incident.id)
            .order_by(incident_updates.c.display_at.desc(), incident_updates.c.id.desc())
        )
    )
    notices = []
    for page_id in subs.pages_showing(conn, incident.team_id, service_ids):
        page = subs.page_by_id(conn, page_id)
        assert page is not None
        url = _page_url(settings, page)
        components = _page_components(conn, page.id, service_ids)
        by_service = {c.service_id: c for c in components}
        incident_url = f"{url}/incidents/{incident.public_id}"
        body = {
            "id": incident.public_id,
            "name": incident.title,
            "status": incident.status,
            "created_at": _iso(incident.created_at),
            "updated_at": _iso(incident.updated_at),
            "monitoring_at": _iso(incident.monitoring_at),
            "resolved_at": _iso(incident.resolved_at),
            "impact": incident.impact_override or incident.impact,
            "shortlink": incident_url,
            "started_at": _iso(incident.started_at),
            "page_id": page.public_id,
            "incident_updates": [
                _incident_update(u, incident.public_id, by_service) for u in all_updates
            ],
            "components": [_component(c, page) for c in components],
        }
        notices.append(
            Notice(
                key=f"incident-update:{update.id}:page:{page.id}",
                kind="incident",
                page=page,
                page_url=url,
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
            )
        )
    return notices


def _incident_update(row: Any, incident_public_id: str, by_service: dict[int, Any]) -> Any:
    affected = None
    if row.affected:
        affected = [
            {
                "code": by_service[a["service_id"]].public_id,
                "name": by_service[a["service_id"]].name,
                "old_status": COMPONENT_STATUS[ServiceStatus(a["old_status"])]
                if a.get("old_status")
                else None,
                "new_status": COMPONENT_STATUS[ServiceStatus(a["new_status"])],
            }
            for a in row.affected
            if a["service_id"] in by_service
        ]
    return {
        "id": row.public_id,
        "status": row.status,
        "body": row.body,
        "incident_id": incident_public_id,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "display_at": _iso(row.display_at),
        "affected_components": affected,
        "deliver_notifications": bool(row.deliver_notifications),
    }


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
    service_ids = sorted(
        conn.execute(
            sa.select(maintenance_services.c.service_id).where(
                maintenance_services.c.window_id == window.id
            )
        ).scalars()
    )
    all_updates = list(
        conn.execute(
            sa.select(maintenance_updates)
            .where(maintenance_updates.c.window_id == window.id)
            .order_by(maintenance_updates.c.display_at.desc(), maintenance_updates.c.id.desc())
        )
    )
    notices = []
    for page_id in subs.pages_showing(conn, window.team_id, service_ids):
        page = subs.page_by_id(conn, page_id)
        assert page is not None
        url = _page_url(settings, page)
        components = _page_components(conn, page.id, service_ids)
        body = {
            "id": window.public_id,
            "name": window.title,
            "status": update.status,
            "created_at": _iso(window.created_at),
            "updated_at": _iso(window.updated_at),
            "monitoring_at": None,
            "resolved_at": _iso(window.completed_at),
            "impact": "maintenance",
            "shortlink": f"{url}/",
            "started_at": _iso(window.started_at or window.starts_at),
            "page_id": page.public_id,
            "scheduled_for": _iso(window.starts_at),
            "scheduled_until": _iso(window.ends_at),
            "incident_updates": [
                {
                    "id": u.public_id,
                    "status": u.status,
                    "body": u.body,
                    "incident_id": window.public_id,
                    "created_at": _iso(u.created_at),
                    "updated_at": _iso(u.created_at),
                    "display_at": _iso(u.display_at),
                    "affected_components": None,
                    "deliver_notifications": True,
                }
                for u in all_updates
            ],
            "components": [_component(c, page) for c in components],
        }
        notices.append(
            Notice(
                key=f"maintenance-update:{update.id}:page:{page.id}",
                kind="maintenance",
                page=page,
                page_url=url,
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
            )
        )
    return notices


def component_notices(
    conn: Connection, settings: Settings, payload: dict[str, Any]
) -> list[Notice]:
    """One notice per change and active page that has the changed service as a component."""
    at = datetime.fromisoformat(str(payload["at"]))
    stamp = int(at.timestamp() * 1_000_000)
    people = payload.get("cause_kind") not in EXPLAINED_CAUSES
    notices = []
    for service_id, old, new in payload.get("changes", []):
        for page_id in subs.pages_with_service(conn, int(service_id)):
            page = subs.page_by_id(conn, page_id)
            assert page is not None
            (row,) = _page_components(conn, page.id, [int(service_id)])
            component = _component(row, page)
            # The status at the change, not whatever it is by the time this runs.
            component["status"] = COMPONENT_STATUS[ServiceStatus(new)]
            component["updated_at"] = _iso(at)
            key = f"component-update:{service_id}:{stamp}:page:{page.id}"
            url = _page_url(settings, page)
            notices.append(
                Notice(
                    key=key,
                    kind="component",
                    page=page,
                    page_url=url,
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
                            "created_at": _iso(at),
                            "component_type": "Component",
                            "id": f"{row.public_id}{stamp:x}"[-24:],
                            "component_id": row.public_id,
                        },
                    },
                )
            )
    return notices


def confirm_notices(conn: Connection, settings: Settings, payload: dict[str, Any]) -> list[Notice]:
    """The confirmation message for one subscriber, unless it is confirmed or gone."""
    row = conn.execute(
        sa.select(subscribers).where(subscribers.c.id == int(payload["subscriber_id"]))
    ).first()
    if row is None or row.confirmed or not row.confirm_token:
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
            service_keys=None,
            people=True,
            context={
                "confirm_url": f"{url}/subscriptions/confirm/{row.confirm_token}",
                "services": row.services or [],
            },
            envelope={},
            only=[row.id],
        )
    ]


# --- expanding --------------------------------------------------------------------------------


def _insert_ignore(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(deliveries).values(rows).on_conflict_do_nothing(index_elements=["dedup_key"])
    )


def _wanted(notice: Notice, row: Any) -> bool:
    if notice.only is not None:
        return row.id in notice.only
    if not notice.people and row.channel != SubscriberChannel.WEBHOOK:
        return False
    return subs.follows(row.services, notice.service_keys)


def expand(rt: Runtime, notice: Notice) -> int:
    """Create the notice's delivery rows (idempotent); returns how many subscribers it has."""
    count, after = 0, 0
    while True:
        with rt.store.begin() as conn:
            if notice.only is not None:
                batch = list(
                    conn.execute(sa.select(subscribers).where(subscribers.c.id.in_(notice.only)))
                )
            else:
                batch = subs.recipients(conn, notice.page.id, after_id=after, limit=EXPAND_BATCH)
            now = utcnow()
            rows = [
                {
                    "dedup_key": f"{notice.key}:subscriber:{r.id}",
                    "subscriber_id": r.id,
                    "kind": DELIVERY_KIND,
                    "message": {"notice": notice.key, "channel": r.channel},
                    "status": "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for r in batch
                if _wanted(notice, r)
            ]
            _insert_ignore(conn, rows)
        count += len(rows)
        if notice.only is not None or len(batch) < EXPAND_BATCH:
            return count
        after = batch[-1].id


# --- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    subscriber_id: int
    error: str | None = None
    permanent: bool = False

    @property
    def sent(self) -> bool:
        return self.error is None


def _pending_ids(rt: Runtime, notice: Notice, now: datetime) -> list[int]:
    prefix = f"{notice.key}:subscriber:"
    with rt.store.read() as conn:
        return list(
            conn.execute(
                sa.select(deliveries.c.id)
                .where(deliveries.c.dedup_key.startswith(prefix, autoescape=True))
                .where(_claimable(now))
                .order_by(deliveries.c.id)
            ).scalars()
        )


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    # A delivery stuck in `sending` past the lease lost its worker mid-send: try it again.
    return sa.or_(
        deliveries.c.status == "pending",
        sa.and_(deliveries.c.status == "sending", deliveries.c.updated_at < now - SENDING_LEASE),
    )


def _claim(rt: Runtime, ids: list[int], now: datetime) -> list[Any]:
    """Move the still-claimable deliveries among `ids` to `sending`; returns them with their
    subscribers. Whoever's UPDATE moves a row is the one who sends it."""
    with rt.store.begin() as conn:
        claimed = list(
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids))
                .where(_claimable(now))
                .values(status="sending", attempts=deliveries.c.attempts + 1, updated_at=now)
                .returning(deliveries.c.id)
            ).scalars()
        )
        if not claimed:
            return []
        return list(
            conn.execute(
                sa.select(
                    deliveries.c.id.label("delivery_id"),
                    subscribers,
                    users.c.email.label("user_email"),
                )
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .outerjoin(users, users.c.id == subscribers.c.user_id)
                .where(deliveries.c.id.in_(claimed))
            )
        )


def send_pending(rt: Runtime, notice: Notice, ctx: Context) -> list[str]:
    """Send the notice's claimable deliveries; returns the temporary failures' messages."""
    now = utcnow()
    ids = _pending_ids(rt, notice, now)
    temporary: list[str] = []
    if not ids:
        return temporary
    with ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="beacon-fanout") as pool:
        for start in range(0, len(ids), SEND_BATCH):
            rows = _claim(rt, ids[start : start + SEND_BATCH], now)
            outcomes = list(pool.map(lambda r: send_one(rt, notice, r, ctx), rows))
            _record(rt, outcomes)
            temporary += [
                f"{o.delivery_id}: {o.error}" for o in outcomes if o.error and not o.permanent
            ]
    return temporary


def _record(rt: Runtime, outcomes: list[Outcome]) -> None:
    """Write a batch's outcomes in one transaction (only over rows still `sending`)."""
    if not outcomes:
        return
    now = utcnow()
    sending = deliveries.c.status == "sending"
    with rt.store.begin() as conn:
        sent = [o.delivery_id for o in outcomes if o.sent]
        if sent:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(sent), sending)
                .values(status="sent", sent_at=now, last_error=None, updated_at=now)
            )
        for o in outcomes:
            if o.sent:
                continue
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == o.delivery_id, sending)
                .values(
                    status="failed" if o.permanent else "pending",
                    last_error=(o.error or "")[:2000],
                    updated_at=now,
                )
            )
            if o.permanent:
                subs.disable(conn, o.subscriber_id, o.error or "permanent failure")
                log.warning("subscriber %s disabled: %s", o.subscriber_id, o.error)


def send_one(rt: Runtime, notice: Notice, row: Any, ctx: Context) -> Outcome:
    """Send one delivery; never raises (the outcome says what happened)."""
    try:
        kind, target, message = build(rt, notice, row, ctx)
        get_channel(kind).send(message, target, ctx)
    except ChannelError as exc:
        return Outcome(row.delivery_id, row.id, str(exc), exc.permanent)
    except Exception as exc:  # a bug must not lose the batch's other outcomes; retried later
        log.exception("delivery %s to subscriber %s failed", row.delivery_id, row.id)
        return Outcome(row.delivery_id, row.id, f"internal error: {exc!r}", False)
    return Outcome(row.delivery_id, row.id)


def build(
    rt: Runtime, notice: Notice, row: Any, ctx: Context
) -> tuple[str, dict[str, Any], Message]:
    """The channel module, target and message for one subscriber."""
    unsubscribe_url = f"{notice.page_url}/subscriptions/unsubscribe/{row.unsubscribe_token}"
    values = {
        **notice.context,
        "page": {"name": notice.page.name, "url": f"{notice.page_url}/"},
    }
    if notice.kind != "confirm":
        values["unsubscribe_url"] = unsubscribe_url
    channel = SubscriberChannel(row.channel)
    if channel == SubscriberChannel.WEBHOOK:
        body = {
            "meta": {
                "unsubscribe": unsubscribe_url,
                "documentation": f"{rt.settings.base_url}/p/{notice.page.slug}/#subscribe",
                "generated_at": _iso(utcnow()),
            },
            **notice.envelope,
        }
        target = {"url": row.address, "secret": row.webhook_secret}
        return "webhook", target, Message(subject="", text="", payload=body)
    if channel == SubscriberChannel.SMS:
        return (
            "sms",
            {"address": row.address},
            Message(subject="", text=messages.sms(notice.kind, values)),
        )
    address = row.address
    if channel == SubscriberChannel.USER:
        with rt.store.read() as conn:
            member = subs.is_member(conn, notice.page, row.user_id)
        if not member or not row.user_email:
            raise ChannelError("the user is no longer a member of the page's teams", permanent=True)
        address = row.user_email
    mail = messages.email(notice.kind, values)
    headers = {}
    if notice.kind != "confirm":
        # RFC 8058 one-click: mail clients POST "List-Unsubscribe=One-Click" to the URL.
        headers = {
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    message = Message(subject=mail.subject, text=mail.text, html=mail.html, headers=headers)
    return channel_module("email", ctx), {"address": address}, message
