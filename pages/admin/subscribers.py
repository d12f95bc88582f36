"""A page's subscribers over the admin API: list and search, remove, import and export
CSV, and the delivery log of the notifications they were sent; and the preview of who an
incident or maintenance step will reach.

Subscribers are people's addresses: every endpoint here asks engine.authz for
MANAGE_SUBSCRIBERS on the page's teams (their responders and admins), never READ, so
another team's responders, stakeholders and keys of other teams see none of them. A
webhook's URL is its receiver's secret: it is shown by scheme and host only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.engine import Connection
from starlette.responses import Response

from engine import audience as counted
from engine import delivery_log as log
from engine import subscriber_admin as admin
from engine import subscribers as subs
from engine.authz import Action
from engine.errors import NotFoundError, ValidationError
from engine.models import SubscriberChannel
from engine.settings import Settings
from engine.tables import (
    incident_services,
    incidents,
    maintenance_services,
    maintenance_windows,
    services,
)
from pages.errors import FieldErrors

from .api import Ctx, Endpoint
from .rows import team_row
from .schemas import MAX_ID, Body, Key, Out, Text

MAX_LIMIT = 500
#: The headers that make an export a download no cache keeps.
NO_STORE = {"Cache-Control": "private, no-store"}


class SubscriberOut(Out):
    id: int
    channel: SubscriberChannel
    #: A webhook by scheme and host only (its URL is the receiver's secret).
    address: str
    #: Service keys followed; null: every service of the page.
    services: list[str] | None
    state: admin.State
    disabled_reason: str | None
    permanent_failures: int
    created_at: datetime
    imported_by: str | None
    imported_at: datetime | None
    confirmation_skipped: bool


class SubscriberIn(Body):
    """One subscriber a manager adds: an email address or phone number (`address`; a
    confirmation goes out unless `skip_confirmation`), a webhook URL, or an account user by
    their email (`user`)."""

    channel: SubscriberChannel
    address: Text = Field("", max_length=2048)
    user: Text = Field("", max_length=320)
    services: list[Key] | None = None
    skip_confirmation: bool = False


class SubscriberAdded(SubscriberOut):
    #: A new webhook's signing secret, shown only here.
    signing_secret: str | None = None
    #: "sent", "skipped", or "not needed" (webhooks and account users count at once).
    confirmation: str


class SubscriberList(Out):
    subscribers: list[SubscriberOut]
    total: int
    #: Pass as `?before=` for the next (older) subscribers; null on the last page.
    next_before: int | None


class ImportProblem(Out):
    row: int
    column: str
    message: str


class ImportOut(Out):
    imported: int
    already_subscribed: int
    #: Waiting subscribers the import confirmed (with `skip_confirmation=true` only).
    confirmed_now: int
    #: "sent" (each new email or SMS subscriber gets a confirmation) or "skipped".
    confirmation: str
    confirmations_sent: int


class NotificationOut(Out):
    key: str
    kind: str
    object_id: int | None
    first_at: datetime
    last_at: datetime
    total: int
    by_state: dict[str, int]


class NotificationList(Out):
    notifications: list[NotificationOut]
    next_before: int | None


class DeliveryOut(Out):
    id: int
    notification: str
    subscriber_id: int
    channel: SubscriberChannel
    address: str
    state: log.DeliveryState
    #: Why it failed (the last attempt's error), for failed and retried deliveries.
    reason: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime | None
    sent_at: datetime | None
    next_attempt_at: datetime | None


class DeliveryList(Out):
    deliveries: list[DeliveryOut]
    total: int
    next_before: int | None


class PageReach(Out):
    id: int
    slug: str
    name: str
    subscribers: int
    by_channel: dict[str, int]


class AudienceOut(Out):
    subscribers: int
    by_channel: dict[str, int]
    pages: list[PageReach]
    sentence: str


# --- query parameters -------------------------------------------------------------------------


def _int(ctx: Ctx, name: str, default: int | None, low: int, high: int) -> int | None:
    text = ctx.request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise FieldErrors(
            [{"field": name, "message": f"must be a whole number from {low} to {high}"}],
            "invalid query parameter",
        )
    return int(text)


def _choice(ctx: Ctx, name: str, choices: type[Any]) -> Any:
    text = ctx.request.query_params.get(name)
    if not text:
        return None
    try:
        return choices(text)
    except ValueError:
        known = ", ".join(c.value for c in choices)
        raise FieldErrors(
            [{"field": name, "message": f"unknown {name} {text!r} (known: {known})"}],
            "invalid query parameter",
        ) from None


def _text(ctx: Ctx, name: str, limit: int = 200) -> str:
    text = ctx.request.query_params.get(name, "")
    if len(text) > limit or "\x00" in text:
        raise FieldErrors(
            [{"field": name, "message": f"at most {limit} characters"}], "invalid query parameter"
        )
    return text


def _flag(ctx: Ctx, name: str) -> bool:
    text = ctx.request.query_params.get(name, "false").lower()
    if text not in ("true", "false"):
        raise FieldErrors([{"field": name, "message": "true or false"}], "invalid query parameter")
    return text == "true"


# --- subscribers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelOption:
    """A way to hear a page, whether this installation can use it, and why not."""

    channel: SubscriberChannel
    label: str
    available: bool
    note: str


def channel_options(settings: Settings, page: subs.Page) -> list[ChannelOption]:
    """The notification options the page's type allows (iLert's: a public page's visitors
    subscribe by email, SMS or webhook and its managers add account users; a private page
    is for account users only, its teams' members), each with whether the installation
    can send it."""
    users = ChannelOption(
        SubscriberChannel.USER,
        "Account users",
        True,
        "members of the page's teams, by email at their account's address"
        if page.private
        else "Beacon users, by email at their account's address",
    )
    if page.private:
        return [users]
    email = settings.email_transport != "none"
    sms = bool(settings.twilio_account_sid)
    return [
        ChannelOption(
            SubscriberChannel.EMAIL,
            "Email",
            email,
            "double opt-in: counts once confirmed"
            if email
            else "no email provider is set (BEACON_SENDGRID_API_KEY or BEACON_SMTP_URL)",
        ),
        ChannelOption(
            SubscriberChannel.SMS,
            "SMS",
            sms,
            "double opt-in: counts once confirmed"
            if sms
            else "Twilio is not set (BEACON_TWILIO_ACCOUNT_SID...)",
        ),
        ChannelOption(
            SubscriberChannel.WEBHOOK,
            "Webhook",
            True,
            "Statuspage's envelope, signed as Standard Webhooks",
        ),
        users,
    ]


def _usable(ctx: Ctx, page: subs.Page, channels: set[SubscriberChannel]) -> None:
    """A 422 for a channel the page's type or the installation does not offer."""
    options = {o.channel: o for o in channel_options(ctx.request.app.state.settings, page)}
    for channel in sorted(channels):
        option = options.get(channel)
        if option is None:
            raise ValidationError(
                f"a {page.type.value} page has no {channel.value} subscribers "
                f"(it offers: {', '.join(sorted(options))})",
                field="channel",
            )
        if not option.available:
            raise ValidationError(f"{option.label}: {option.note}", field="channel")


def _page(ctx: Ctx, conn: Connection) -> subs.Page:
    """The path's page (the dispatcher asked engine.authz about it before the body)."""
    page = subs.page_by_id(conn, ctx.id)
    if page is None:
        raise NotFoundError(f"no page {ctx.id}")
    ctx.check(conn, sorted(page.team_ids), f"page {ctx.id}")
    return page


def _subscriber_out(row: Any) -> SubscriberOut:
    return SubscriberOut.model_validate(
        {
            **row._mapping,
            "address": admin.shown(row),
            "state": admin.state_of(row),
            "confirmation_skipped": bool(row.confirmation_skipped),
        }
    )


def list_subscribers(ctx: Ctx) -> SubscriberList:
    """The page's subscribers, newest first: `q` (a substring of the email, phone number or
    webhook's scheme and host), `channel`, `state` (pending, confirmed, disabled), `limit`
    (at most 500), `before` (the previous answer's `next_before`)."""
    what = admin.Search(
        q=_text(ctx, "q"),
        channel=_choice(ctx, "channel", SubscriberChannel),
        state=_choice(ctx, "state", admin.State),
    )
    limit = _int(ctx, "limit", 100, 1, MAX_LIMIT) or 100
    before = _int(ctx, "before", None, 1, MAX_ID)
    with ctx.store.read() as conn:
        page = _page(ctx, conn)
        found = admin.search(conn, page.id, what, limit=limit, before=before)
    return SubscriberList(
        subscribers=[_subscriber_out(r) for r in found.rows],
        total=found.total,
        next_before=found.next_before,
    )


def get_subscriber(ctx: Ctx) -> SubscriberOut:
    with ctx.store.read() as conn:
        page = _page(ctx, conn)
        row = admin.find(conn, page.id, ctx.ids["sid"])
    if row is None:
        raise NotFoundError(f"no subscriber {ctx.ids['sid']} on page {page.id}")
    return _subscriber_out(row)


def add_subscriber(ctx: Ctx) -> SubscriberAdded:
    """Add one subscriber (recorded as added by the caller). Email and SMS get a
    confirmation unless `skip_confirmation` (recorded); a webhook's secret is in this
    answer only; an account user on a private page must be a member of its teams."""
    body: SubscriberIn = ctx.body
    settings = ctx.request.app.state.settings
    with ctx.begin() as conn:
        page = _page(ctx, conn)
        _usable(ctx, page, {body.channel})
        added = admin.add(
            conn,
            page,
            body.channel,
            address=body.address,
            user_email=body.user,
            services=body.services,
            actor=ctx.who.actor,
            skip_confirmation=body.skip_confirmation,
            allow_private_webhooks=settings.webhook_allow_private,
        )
        row = admin.find(conn, page.id, added.subscriber_id)
        assert row is not None
        shown = admin.shown(row)
        ctx.audit(conn, "create", "subscriber", f"{page.slug}: {shown}", _team_of(page))
    people = body.channel in (SubscriberChannel.EMAIL, SubscriberChannel.SMS)
    return SubscriberAdded.model_validate(
        {
            **_subscriber_out(row).model_dump(),
            "signing_secret": added.webhook_secret,
            "confirmation": (
                "sent" if added.confirmation_sent else "skipped" if people else "not needed"
            ),
        }
    )


def _team_of(page: subs.Page) -> int:
    return min(page.team_ids)


def remove_subscriber(ctx: Ctx) -> None:
    """Remove a subscriber, as its own unsubscribe link would (its pending deliveries go
    with it)."""
    with ctx.begin() as conn:
        page = _page(ctx, conn)
        row = admin.remove(conn, page.id, ctx.ids["sid"])
        if row is None:
            raise NotFoundError(f"no subscriber {ctx.ids['sid']} on page {page.id}")
        shown = admin.shown(row)
        ctx.audit(conn, "delete", "subscriber", f"{page.slug}: {shown}", _team_of(page))


def export_subscribers(ctx: Ctx) -> Response:
    """Every subscriber of the page as CSV (UTF-8, a header line; webhooks by host only)."""
    with ctx.store.read() as conn:
        page = _page(ctx, conn)
        body = admin.to_csv(admin.export_rows(conn, page.id))
    headers = {
        **NO_STORE,
        "Content-Disposition": f'attachment; filename="{page.slug}-subscribers.csv"',
    }
    return Response(body, headers=headers, media_type="text/csv; charset=utf-8")


@dataclass(frozen=True)
class ImportFile:
    """An import as the web UI's form gives it (the API's is the body and a query flag)."""

    data: bytes
    skip_confirmation: bool


def import_subscribers(ctx: Ctx) -> ImportOut:
    """Import email and SMS subscribers from CSV (see engine.subscriber_admin.parse): all
    or nothing. Each new subscriber gets a confirmation message unless
    `skip_confirmation=true` says they confirmed elsewhere; each row records who imported
    it and whether its confirmation was skipped."""
    if isinstance(ctx.body, ImportFile):
        data, skip = ctx.body.data, ctx.body.skip_confirmation
    else:
        data, skip = ctx.body, _flag(ctx, "skip_confirmation")
    with ctx.begin() as conn:
        page = _page(ctx, conn)
        try:
            rows = admin.parse(conn, page, data)
            _usable(ctx, page, {r.channel for r in rows})
        except admin.ImportRefused as exc:
            problems = [
                {
                    "field": f"row {p.row}" + (f", column {p.column}" if p.column else ""),
                    "message": p.message,
                }
                for p in exc.problems
            ]
            raise FieldErrors(problems, f"nothing was imported: {exc}") from None
        result = admin.import_rows(conn, page, rows, actor=ctx.who.actor, skip_confirmation=skip)
        ctx.audit(
            conn,
            "import",
            "subscriber",
            f"{page.slug}: {result.imported} subscribers",
            _team_of(page),
            imported=result.imported,
            already_subscribed=result.already_subscribed,
            confirmation_skipped=skip,
        )
    return ImportOut(
        imported=result.imported,
        already_subscribed=result.already_subscribed,
        confirmed_now=result.confirmed_now,
        confirmation="skipped" if skip else "sent",
        confirmations_sent=result.confirmations_sent,
    )


# --- the delivery log -------------------------------------------------------------------------


def list_notifications(ctx: Ctx) -> NotificationList:
    """The notifications the page's subscribers were sent, newest first, each with its
    deliveries counted by state: `limit` (at most 500), `before`."""
    limit = _int(ctx, "limit", 50, 1, MAX_LIMIT) or 50
    before = _int(ctx, "before", None, 1, MAX_ID)
    with ctx.store.read() as conn:
        page = _page(ctx, conn)
        found, next_before = log.notifications(conn, page.id, limit=limit, before=before)
    return NotificationList(
        notifications=[NotificationOut.model_validate(n) for n in found],
        next_before=next_before,
    )


def list_deliveries(ctx: Ctx) -> DeliveryList:
    """The delivery log: who, channel, state, reason, attempts, newest first. Filters:
    `notification` (a key from the notifications list), `channel`, `state` (pending,
    sending, sent, failed), `q` (a substring of the address); `limit`, `before`."""
    what = log.DeliveryFilter(
        notification=_text(ctx, "notification", 300) or None,
        channel=_choice(ctx, "channel", SubscriberChannel),
        state=_choice(ctx, "state", log.DeliveryState),
        q=_text(ctx, "q"),
    )
    limit = _int(ctx, "limit", 100, 1, MAX_LIMIT) or 100
    before = _int(ctx, "before", None, 1, MAX_ID)
    with ctx.store.read() as conn:
        page = _page(ctx, conn)
        rows, total, next_before = log.entries(conn, page.id, what, limit=limit, before=before)
    return DeliveryList(
        deliveries=[
            DeliveryOut.model_validate(
                {
                    **r._mapping,
                    "address": admin.shown(r),
                    "state": r.status,
                    "reason": r.last_error,
                }
            )
            for r in rows
        ],
        total=total,
        next_before=next_before,
    )


# --- who will hear ------------------------------------------------------------------------------


def _audience_out(found: counted.Audience) -> AudienceOut:
    return AudienceOut(
        subscribers=found.subscribers,
        by_channel=found.by_channel,
        pages=[
            PageReach(
                id=p.id,
                slug=p.slug,
                name=p.name,
                subscribers=p.subscribers,
                by_channel=p.by_channel,
            )
            for p in found.pages
        ],
        sentence=found.sentence,
    )


def preview_incident(ctx: Ctx) -> AudienceOut:
    """Who a new incident of `team` (a key; the caller's only team by default) on
    `services` (ids or keys, comma-separated; none: every page of the team) would reach."""
    refs = [r for r in _text(ctx, "services", 2000).split(",") if r.strip()]
    with ctx.store.read() as conn:
        team_id = ctx.team_id(conn, _text(ctx, "team") or None)
        ids = []
        for ref in refs:
            ref = ref.strip()
            query = sa.select(services.c.id).where(services.c.team_id == team_id)
            by_id = ref.isdigit() and len(ref) <= 10 and int(ref) <= MAX_ID
            query = query.where(services.c.id == int(ref) if by_id else services.c.key == ref)
            found = conn.execute(query).scalar()
            if found is None:
                raise FieldErrors(
                    [{"field": "services", "message": f"no service {ref!r} in the team"}],
                    "invalid query parameter",
                )
            ids.append(int(found))
        return _audience_out(counted.audience(conn, team_id, ids))


def preview_update(ctx: Ctx) -> AudienceOut:
    """Who an update of the incident posted with notify would reach."""
    with ctx.store.read() as conn:
        row = team_row(ctx, conn, incidents, "incident")
        ids = conn.execute(
            sa.select(incident_services.c.service_id).where(
                incident_services.c.incident_id == row.id
            )
        ).scalars()
        return _audience_out(counted.audience(conn, row.team_id, list(ids)))


def preview_maintenance(ctx: Ctx) -> AudienceOut:
    """Who the window's steps reach when it notifies."""
    with ctx.store.read() as conn:
        row = team_row(ctx, conn, maintenance_windows, "maintenance window")
        ids = conn.execute(
            sa.select(maintenance_services.c.service_id).where(
                maintenance_services.c.window_id == row.id
            )
        ).scalars()
        return _audience_out(counted.audience(conn, row.team_id, list(ids)))


P = "/api/v1/pages/{id:int}"
PAGING = (("limit", "at most 500"), ("before", "the previous answer's next_before"))
ENDPOINTS = [
    Endpoint(
        "GET",
        P + "/subscribers",
        list_subscribers,
        "List and search a page's subscribers",
        "subscribers",
        response=SubscriberList,
        query=(
            ("q", "a substring of the email, phone number or webhook's scheme and host"),
            ("channel", "email, sms, webhook or user"),
            ("state", "pending, confirmed or disabled"),
            *PAGING,
        ),
    ),
    Endpoint(
        "POST",
        P + "/subscribers",
        add_subscriber,
        "Add a subscriber to a page",
        "subscribers",
        SubscriberIn,
        SubscriberAdded,
        status=201,
    ),
    Endpoint(
        "GET",
        P + "/subscribers.csv",
        export_subscribers,
        "Export a page's subscribers as CSV",
        "subscribers",
        produces="text/csv",
    ),
    Endpoint(
        "POST",
        P + "/subscribers/import",
        import_subscribers,
        "Import email and SMS subscribers from CSV (all or nothing)",
        "subscribers",
        response=ImportOut,
        raw_limit=admin.MAX_IMPORT_BYTES,
        consumes="text/csv",
        query=(
            (
                "skip_confirmation",
                "true: the subscribers confirmed elsewhere; no confirmation is sent "
                "(recorded on each row). Default false: each gets a confirmation message",
            ),
        ),
    ),
    Endpoint(
        "GET",
        P + "/subscribers/{sid:int}",
        get_subscriber,
        "Get a page's subscriber",
        "subscribers",
        response=SubscriberOut,
    ),
    Endpoint(
        "DELETE",
        P + "/subscribers/{sid:int}",
        remove_subscriber,
        "Remove a page's subscriber",
        "subscribers",
        status=204,
    ),
    Endpoint(
        "GET",
        P + "/notifications",
        list_notifications,
        "The notifications a page's subscribers were sent, with deliveries by state",
        "subscribers",
        response=NotificationList,
        query=PAGING,
    ),
    Endpoint(
        "GET",
        P + "/deliveries",
        list_deliveries,
        "The delivery log of a page's notifications",
        "subscribers",
        response=DeliveryList,
        query=(
            ("notification", "a notification's key"),
            ("channel", "email, sms, webhook or user"),
            ("state", "pending, sending, sent or failed"),
            ("q", "a substring of the subscriber's address"),
            *PAGING,
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/incidents/audience",
        preview_incident,
        "Who a new incident would notify",
        "incidents",
        response=AudienceOut,
        declared=Action.POST_INCIDENT,
        query=(
            ("team", "the incident's team (a key)"),
            ("services", "affected services, ids or keys, comma-separated"),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/incidents/{id:int}/audience",
        preview_update,
        "Who an update of the incident would notify",
        "incidents",
        response=AudienceOut,
        declared=Action.POST_INCIDENT,
    ),
    Endpoint(
        "GET",
        "/api/v1/maintenance-windows/{id:int}/audience",
        preview_maintenance,
        "Who the maintenance window's steps would notify",
        "maintenance",
        response=AudienceOut,
        declared=Action.MANAGE_MAINTENANCE,
    ),
]
