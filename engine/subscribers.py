"""Subscribers of a status page: who gets told about incidents, maintenance and components.

A subscriber belongs to one page and has a channel (`email`, `sms`, `webhook`, or `user`: an
account user; on a private page a member subscribing themselves), an address and an
optional service filter (service keys; null follows every service of the page). Email and
SMS need double opt-in: they are stored unconfirmed with a confirmation link (its token
derived, never stored: engine.subscriber_links) and count only once confirmed. Webhooks
are confirmed at once and get a signing secret. Account users are confirmed at once:
private-page members who subscribe while signed in, or users a public page's managers add.

Subscribing the same address twice never adds a row: `(page, channel, address)` is unique,
and a confirmed subscription is left alone (an anonymous request must not change someone
else's filter). Everything here works in the caller's transaction.

A webhook's URL is the receiver's secret (its path and query are the password of a
Slack-style hook), so the store keeps it sealed (`webhook_url`, engine.vault) and its
`address` is a keyed lookup digest of the page and URL, which the unique index holds, so
the same URL on the same page is still one subscriber. What managers see of it, its
scheme and host, is kept readable as `webhook_host` (`shown`).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import subscriber_links as links
from . import vault
from .errors import ValidationError
from .models import PageType, SubscriberChannel
from .pagemodel import linked_domain, page_address
from .tables import (
    incident_services,
    incidents,
    maintenance_services,
    maintenance_windows,
    page_services,
    page_teams,
    services,
    status_pages,
    subscribers,
    team_members,
    users,
    utcnow,
)

# Deliberately simple: one "@", a dotted domain, no spaces. The confirmation email is the
# real check; a stricter pattern only rejects valid addresses.
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]{2,}$")
# E.164: "+", a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
MAX_ADDRESS = 2048
#: Outbox kind: send a new email or SMS subscriber its confirmation (workers.fanout).
CONFIRM = "notify.subscriber_confirm"


@dataclass(frozen=True)
class Page:
    """What the subscription flows need to know about a page."""

    id: int
    public_id: str
    slug: str
    name: str
    type: PageType
    active: bool
    team_ids: frozenset[int]
    #: Only once verified (`pagemodel.linked_domain`): it is what links name.
    custom_domain: str | None
    #: People (not only webhooks) hear bare status changes too.
    notify_component_changes: bool = False

    @property
    def private(self) -> bool:
        return self.type == PageType.PRIVATE

    def url(self, base_url: str, pages_domain: str = "") -> str:
        """The page's address in links (`pagemodel.page_address`)."""
        return page_address(
            self.slug, self.custom_domain, base_url=base_url, pages_domain=pages_domain
        )


@dataclass(frozen=True)
class Subscription:
    """The outcome of `subscribe`. `confirm_token` is set while a confirmation is owed;
    `webhook_secret` only when a new secret was made (it is shown once). The tokens are
    made for this answer (engine.subscriber_links); the store keeps neither."""

    subscriber_id: int
    channel: SubscriberChannel
    address: str
    services: list[str] | None
    confirmed: bool
    created: bool
    confirm_token: str | None
    unsubscribe_token: str
    webhook_secret: str | None = None


def page_by_slug(conn: Connection, slug: str) -> Page | None:
    """The page with `slug`, or None."""
    row = conn.execute(sa.select(status_pages).where(status_pages.c.slug == slug)).first()
    return _page(conn, row) if row is not None else None


def page_by_id(conn: Connection, page_id: int) -> Page | None:
    row = conn.execute(sa.select(status_pages).where(status_pages.c.id == page_id)).first()
    return _page(conn, row) if row is not None else None


def _page(conn: Connection, row: Any) -> Page:
    team_ids = set(
        conn.execute(
            sa.select(page_teams.c.team_id).where(page_teams.c.page_id == row.id)
        ).scalars()
    )
    team_ids.add(row.team_id)
    return Page(
        id=row.id,
        public_id=row.public_id,
        slug=row.slug,
        name=row.name,
        type=PageType(row.type),
        active=bool(row.active),
        team_ids=frozenset(team_ids),
        custom_domain=linked_domain(row.custom_domain, row.domain_verified_at),
        notify_component_changes=bool(row.notify_component_changes),
    )


def is_member(conn: Connection, page: Page, user_id: int) -> bool:
    """Whether the user is an active admin or a member of one of the page's teams."""
    user = conn.execute(
        sa.select(users.c.role, users.c.active).where(users.c.id == user_id)
    ).first()
    if user is None or not user.active:
        return False
    if user.role == "admin":
        return True
    return (
        conn.execute(
            sa.select(team_members.c.team_id)
            .where(team_members.c.user_id == user_id)
            .where(team_members.c.team_id.in_(sorted(page.team_ids)))
            .limit(1)
        ).first()
        is not None
    )


def user_may_hear(conn: Connection, page: Page, user_id: int) -> bool:
    """Whether an account-user subscriber still hears the page: a private page's news is
    for its teams' members (and admins) only; a public page's needs an active account."""
    if page.private:
        return is_member(conn, page, user_id)
    active = conn.execute(sa.select(users.c.active).where(users.c.id == user_id)).scalar()
    return bool(active)


def page_service_keys(conn: Connection, page_id: int) -> dict[int, str]:
    """The page's services: service id -> service key."""
    return {
        r.id: r.key
        for r in conn.execute(
            sa.select(services.c.id, services.c.key)
            .join(page_services, page_services.c.service_id == services.c.id)
            .where(page_services.c.page_id == page_id)
        )
    }


@dataclass(frozen=True)
class Component:
    key: str
    name: str


def page_components(conn: Connection, page_id: int) -> list[Component]:
    """The page's services in page order, for choosing which to follow."""
    return [
        Component(r.key, r.name)
        for r in conn.execute(
            sa.select(services.c.key, services.c.name)
            .join(page_services, page_services.c.service_id == services.c.id)
            .where(page_services.c.page_id == page_id)
            .order_by(page_services.c.position, page_services.c.id)
        )
    ]


# --- validation ---------------------------------------------------------------------------


def normalise_address(channel: SubscriberChannel, address: str) -> str:
    """The address in its stored form, or a `ValidationError` naming what is wrong."""
    value = (address or "").strip()
    if not value:
        raise ValidationError("an address is required", field="address")
    if len(value) > MAX_ADDRESS:
        raise ValidationError(
            f"the address is longer than {MAX_ADDRESS} characters", field="address"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        # No address holds one; "a@b.c" plus one would be a new subscriber of its own (a
        # confirmation past the mailbox's limit), and PostgreSQL cannot store a NUL.
        raise ValidationError("the address holds a control character", field="address")
    if channel == SubscriberChannel.EMAIL:
        if len(value) > 254 or not _EMAIL.match(value):
            raise ValidationError(f"{value!r} is not an email address", field="address")
        return value.lower()
    if channel == SubscriberChannel.SMS:
        phone = _PHONE_PUNCTUATION.sub("", value)
        if not _E164.match(phone):
            raise ValidationError(
                f"{value!r} is not a phone number in E.164 form (e.g. +4915112345678)",
                field="address",
            )
        return phone
    if channel == SubscriberChannel.WEBHOOK:
        return _webhook_url(value)
    raise ValidationError(f"channel {channel!r} takes no address", field="channel")


def _webhook_url(value: str) -> str:
    # The messages never repeat the URL: its path is the receiver's secret, and an error's
    # text reaches logs, import reports and the pages that show it.
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValidationError(
            "the webhook URL is not a valid URL (its host or port)", field="address"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("the webhook URL is not an http(s) URL with a host", field="address")
    if parts.username or parts.password:
        # Credentials in the URL would be shown back in listings and logs.
        raise ValidationError("the webhook URL must not contain credentials", field="address")
    return value


def literal_private_host(url: str) -> bool:
    """Whether the URL's host is an IP literal that is not globally routable (checked at
    subscribe time; names are resolved and checked again when sending)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def check_services(conn: Connection, page_id: int, keys: Iterable[str] | None) -> list[str] | None:
    """The filter as stored (sorted, deduplicated), or a `ValidationError` naming unknown keys.
    None or an empty list means every service of the page."""
    if keys is None:
        return None
    wanted = sorted({str(k).strip() for k in keys if str(k).strip()})
    if not wanted:
        return None
    known = set(page_service_keys(conn, page_id).values())
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise ValidationError(
            f"unknown services for this page: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known)) or 'none'})",
            field="services",
        )
    return wanted


# --- the subscription lifecycle --------------------------------------------------------------


def subscribe(
    conn: Connection,
    page: Page,
    channel: SubscriberChannel | str,
    address: str,
    services_filter: Sequence[str] | None = None,
    *,
    user_id: int | None = None,
    now: datetime | None = None,
) -> Subscription:
    """Subscribe `address` to `page` by `channel` (idempotent; see the module docstring).

    For `user` the address is the user's email and `user_id` is required; the caller has
    checked that the user may see the page.
    """
    now = now or utcnow()
    try:
        channel = SubscriberChannel(channel)
    except ValueError:
        raise ValidationError(
            f"unknown channel {channel!r} (email, sms or webhook)", field="channel"
        ) from None
    if page.private and channel != SubscriberChannel.USER:
        raise ValidationError(
            "this page is private: members subscribe while signed in (channel user)",
            field="channel",
        )
    if channel == SubscriberChannel.USER:
        # Account users: a private page's members subscribing themselves, or users a
        # public page's managers add (iLert's "account users" option).
        if user_id is None:
            raise ValidationError(
                "channel user is for account users: members subscribe while signed in",
                field="channel",
            )
        stored_address = address.strip().lower()
        match = subscribers.c.user_id == user_id
    elif channel == SubscriberChannel.WEBHOOK:
        stored_address = normalise_address(channel, address)
        # Under every key of the ring: a row stored before the secret key changed (and not
        # yet resealed) is still this URL's subscription.
        match = subscribers.c.address.in_(vault.of(conn).lookups(_lookup(page.id, stored_address)))
    else:
        stored_address = normalise_address(channel, address)
        match = subscribers.c.address == stored_address
    wanted = check_services(conn, page.id, services_filter)
    existing = conn.execute(
        sa.select(subscribers)
        .where(subscribers.c.page_id == page.id, subscribers.c.channel == channel)
        .where(match)
    ).first()
    if existing is not None:
        return _again(conn, existing, channel, stored_address, wanted)
    confirmed = channel in (SubscriberChannel.WEBHOOK, SubscriberChannel.USER)
    values: dict[str, Any] = {
        "page_id": page.id,
        "channel": channel,
        "address": stored_address,
        "user_id": user_id,
        "services": wanted,
        "confirmed": confirmed,
        "link_selector": links.new_selector(),
        "confirm_selector": None if confirmed else links.new_selector(),
        "created_at": now,
    }
    secret = None
    if channel == SubscriberChannel.WEBHOOK:
        secret = new_webhook_secret()
        values.update(webhook_columns(vault.of(conn), page.id, stored_address))
    stored = {**values, "webhook_secret": seal_webhook_secret(conn, secret) if secret else None}
    inserted = conn.execute(subscribers.insert().values(**stored)).inserted_primary_key
    assert inserted is not None
    row = conn.execute(sa.select(subscribers).where(subscribers.c.id == inserted[0])).one()
    ring = vault.of(conn)
    return Subscription(
        subscriber_id=row.id,
        channel=channel,
        address=stored_address,
        services=wanted,
        confirmed=confirmed,
        created=True,
        confirm_token=links.confirm_token(ring, row),
        unsubscribe_token=links.link_token(ring, row),
        webhook_secret=secret,
    )


def _again(
    conn: Connection,
    row: Any,
    channel: SubscriberChannel,
    address: str,
    wanted: list[str] | None,
) -> Subscription:
    """A repeated subscription. A working confirmed one stays as it is, except that a
    signed-in member (`user`) sets their own filter; an unconfirmed one takes the new filter
    (its owner still has to confirm); one disabled by a permanent failure starts over: email
    and SMS confirm again, a webhook is enabled again as it was.

    A webhook keeps its secret, unsubscribe token and filter: whoever posts its URL again
    may not be its owner (anyone can post a known URL), so they get nothing to sign or
    unsubscribe with and change nothing but "try sending again". The owner has both."""
    values: dict[str, Any] = {}
    if row.disabled_reason is not None:
        values.update(disabled_reason=None, permanent_failures=0)
        if channel in (SubscriberChannel.EMAIL, SubscriberChannel.SMS):
            # The confirmation goes to the address: its owner accepts the filter or not.
            # A new round: the old confirmation links end with their selector.
            values.update(
                services=wanted,
                confirmed=False,
                confirm_selector=links.new_selector(),
                legacy_confirm_digest=None,
            )
    if channel == SubscriberChannel.USER:
        values.update(services=wanted)  # a signed-in member changes their own filter
    elif not row.confirmed and row.disabled_reason is None:
        values.update(services=wanted)
        if not row.confirm_selector:
            values.update(confirm_selector=links.new_selector())
    if values:
        conn.execute(subscribers.update().where(subscribers.c.id == row.id).values(**values))
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == row.id)).one()
    ring = vault.of(conn)
    return Subscription(
        subscriber_id=row.id,
        channel=channel,
        address=address,
        services=row.services,
        confirmed=bool(row.confirmed),
        created=False,
        confirm_token=None if row.confirmed else links.confirm_token(ring, row),
        unsubscribe_token=links.link_token(ring, row),
        webhook_secret=None,
    )


WEBHOOK_SECRET = "subscribers.webhook_secret"
#: The column a webhook subscriber's URL is sealed for (engine.vault binds it in).
WEBHOOK_URL = "subscribers.webhook_url"


def _lookup(page_id: int, url: str) -> str:
    # The page is bound in: one URL on two pages has two unrelated digests, so a copy of
    # the database does not tell which pages a receiver follows.
    return f"beacon/subscriber/webhook-url:{page_id}:{url}"


def webhook_host(url: str) -> str:
    """The part of a webhook's URL managers see, kept readable: its scheme and host (the
    rest, path and query, is the receiver's secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def webhook_columns(keyring: vault.Keyring, page_id: int, url: str) -> dict[str, str]:
    """What the store keeps of a webhook subscriber's `url` on the page: a lookup digest
    as its `address`, the URL sealed, and its scheme and host."""
    return {
        "address": keyring.lookup(_lookup(page_id, url)),
        "webhook_url": keyring.seal(url, WEBHOOK_URL),
        "webhook_host": webhook_host(url),
    }


def webhook_url(keyring: vault.Keyring, row: Any) -> str:
    """Where a webhook subscriber's deliveries go (`row`: its subscribers row). A row
    without a sealed URL is one no migration reached, whose address is still the URL."""
    if row.webhook_url:
        return keyring.reveal(row.webhook_url, WEBHOOK_URL)
    return str(row.address)


def shown(row: Any) -> str:
    """A subscriber's address as managers and the subscriber's own pages show it: a
    webhook by scheme and host only (anyone holding its URL can post forged updates to a
    receiver that does not check signatures), other channels whole."""
    if row.channel == SubscriberChannel.WEBHOOK:
        if row.webhook_host:
            return f"{row.webhook_host}/…"
        if row.webhook_url:
            return "…"
        return f"{webhook_host(row.address)}/…"  # an unconverted row's address is its URL
    return str(row.address)


def seal_webhook_secret(conn: Connection, secret: str) -> str:
    """What the store keeps of a webhook subscriber's signing secret: it encrypted."""
    return vault.of(conn).seal(secret, WEBHOOK_SECRET)


def webhook_secret(keyring: vault.Keyring, stored: str | None) -> str | None:
    """The signing secret of a webhook subscriber row (`stored`: its column)."""
    return keyring.reveal(stored, WEBHOOK_SECRET) if stored else None


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and standard base64 of 32 random bytes (the
    libraries decode the part after the prefix as base64, so url-safe characters would be
    read differently by different ones)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def confirm(conn: Connection, page_id: int, token: str) -> Any | None:
    """Confirm the subscriber holding `token` on the page; returns its row, or None for a
    token this page does not know. Confirming twice is harmless."""
    row = links.find(conn, page_id, links.CONFIRM, token)
    if row is None:
        return None
    if not row.confirmed:
        conn.execute(subscribers.update().where(subscribers.c.id == row.id).values(confirmed=True))
    return conn.execute(sa.select(subscribers).where(subscribers.c.id == row.id)).one()


def by_confirm_token(conn: Connection, page_id: int, token: str) -> Any | None:
    """The subscriber of the page holding confirmation `token`, or None (nothing changes:
    a link scanner's GET must not confirm anyone)."""
    return links.find(conn, page_id, links.CONFIRM, token)


def set_services(
    conn: Connection, page_id: int, token: str, keys: Iterable[str] | None
) -> Any | None:
    """The subscriber holding unsubscribe `token` now follows `keys` (None or nothing: every
    service of the page); returns its row, or None for a token this page does not know.
    Unknown keys are a `ValidationError` (the page's services may have changed since the
    form was shown)."""
    row = by_unsubscribe_token(conn, page_id, token)
    if row is None:
        return None
    wanted = check_services(conn, page_id, keys)
    conn.execute(subscribers.update().where(subscribers.c.id == row.id).values(services=wanted))
    return conn.execute(sa.select(subscribers).where(subscribers.c.id == row.id)).one()


def by_unsubscribe_token(conn: Connection, page_id: int, token: str) -> Any | None:
    """The subscriber of the page holding `token` (the link in every message, which both
    unsubscribes and manages what it follows), or None."""
    return links.find(conn, page_id, links.LINK, token)


def unsubscribe(conn: Connection, page_id: int, token: str) -> bool:
    """Remove the subscriber holding `token` (its pending deliveries go with it); returns
    whether there was one."""
    row = links.find(conn, page_id, links.LINK, token)
    if row is None:
        return False
    result = conn.execute(subscribers.delete().where(subscribers.c.id == row.id))
    return bool(result.rowcount)


def disable(conn: Connection, subscriber_id: int, reason: str) -> None:
    """Stop delivering to a subscriber now, keeping the reason."""
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .values(disabled_reason=reason[:2000])
    )


def record_permanent_failure(
    conn: Connection, subscriber_id: int, reason: str, *, limit: int = 3
) -> bool:
    """Count a permanent failure; the `limit`-th in a row stops delivering to the subscriber,
    keeping the reason. Returns whether this one disabled it."""
    failures = subscribers.c.permanent_failures + 1
    disabled = f"{reason} ({limit} permanent failures in a row)" if limit > 1 else reason
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id)
        .values(
            permanent_failures=failures,
            disabled_reason=sa.case(
                (
                    sa.and_(failures >= limit, subscribers.c.disabled_reason.is_(None)),
                    disabled[:2000],
                ),
                else_=subscribers.c.disabled_reason,
            ),
        )
    )
    row = conn.execute(
        sa.select(subscribers.c.permanent_failures, subscribers.c.disabled_reason).where(
            subscribers.c.id == subscriber_id
        )
    ).first()
    return row is not None and row.permanent_failures == limit and row.disabled_reason is not None


def record_success(conn: Connection, subscriber_ids: Iterable[int]) -> None:
    """A delivery went through: the count of permanent failures in a row starts again."""
    ids = sorted(set(subscriber_ids))
    if ids:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id.in_(ids), subscribers.c.permanent_failures > 0)
            .values(permanent_failures=0)
        )


# --- who hears about what ---------------------------------------------------------------------


def pages_showing(conn: Connection, team_id: int, service_ids: Iterable[int]) -> list[int]:
    """The active pages an incident or maintenance of `team_id` on `service_ids` shows on:
    pages the team manages that contain one of the services (any such page when there are
    no services), as the status page itself decides."""
    ids = sorted(set(service_ids))
    managed = sa.or_(
        status_pages.c.team_id == team_id,
        sa.exists().where(
            page_teams.c.page_id == status_pages.c.id, page_teams.c.team_id == team_id
        ),
    )
    query = sa.select(status_pages.c.id).where(status_pages.c.active.is_(True)).where(managed)
    if ids:
        query = query.where(
            sa.exists().where(
                page_services.c.page_id == status_pages.c.id,
                page_services.c.service_id.in_(ids),
            )
        )
    return list(conn.execute(query.order_by(status_pages.c.id)).scalars())


def pages_with_service(conn: Connection, service_id: int) -> list[int]:
    """The active pages on which the service is a component."""
    return list(
        conn.execute(
            sa.select(status_pages.c.id)
            .join(page_services, page_services.c.page_id == status_pages.c.id)
            .where(page_services.c.service_id == service_id)
            .where(status_pages.c.active.is_(True))
            .order_by(status_pages.c.id)
        ).scalars()
    )


#: How far apart an incident or maintenance step and a status change may be and still be
#: one step: they are written in one transaction, but with times taken a moment apart.
SAME_STEP = timedelta(seconds=5)


def explained(conn: Connection, service_id: int, at: datetime) -> bool:
    """Whether an incident or a maintenance window covered the service when its status
    changed at `at` (open then, or opened or ended in the same step). People hear that
    incident's or window's own updates, so the bare change would tell them twice."""
    early, late = at - SAME_STEP, at + SAME_STEP
    incident = (
        sa.select(incidents.c.id)
        .join(incident_services, incident_services.c.incident_id == incidents.c.id)
        .where(incident_services.c.service_id == service_id)
        .where(incidents.c.created_at <= late)
        .where(sa.or_(incidents.c.resolved_at.is_(None), incidents.c.resolved_at >= early))
        .limit(1)
    )
    window = (
        sa.select(maintenance_windows.c.id)
        .join(maintenance_services, maintenance_services.c.window_id == maintenance_windows.c.id)
        .where(maintenance_services.c.service_id == service_id)
        .where(maintenance_windows.c.started_at.isnot(None))
        .where(maintenance_windows.c.started_at <= late)
        .where(
            sa.or_(
                maintenance_windows.c.completed_at.is_(None),
                maintenance_windows.c.completed_at >= early,
            )
        )
        .limit(1)
    )
    return conn.execute(incident).first() is not None or conn.execute(window).first() is not None


def follows(filter_keys: Sequence[str] | None, keys: set[str] | None) -> bool:
    """Whether a subscriber with `filter_keys` hears about something touching `keys`
    (None: something that touches no particular service, which everyone hears about)."""
    if not filter_keys or keys is None:
        return True
    return bool(set(filter_keys) & keys)


def recipients(
    conn: Connection,
    page_id: int,
    *,
    after_id: int = 0,
    upto_id: int | None = None,
    limit: int = 500,
    channels: Sequence[str] | None = None,
) -> list[Any]:
    """A batch of the page's confirmed, working subscribers (of `channels`, default all) with
    ids above `after_id`, in id order (keyset pagination keeps each query cheap however many
    subscribers there are)."""
    query = (
        sa.select(subscribers)
        .where(subscribers.c.page_id == page_id)
        .where(subscribers.c.confirmed.is_(True))
        .where(subscribers.c.disabled_reason.is_(None))
        .where(subscribers.c.id > after_id)
    )
    if upto_id is not None:
        query = query.where(subscribers.c.id <= upto_id)
    if channels is not None:
        query = query.where(subscribers.c.channel.in_(list(channels)))
    return list(conn.execute(query.order_by(subscribers.c.id).limit(limit)))
