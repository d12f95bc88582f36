"""Status pages: every write of one (settings, managing teams, the services it shows, logo
and favicon, custom domain), for the admin API and `beacon apply` alike.

A page belongs to its first managing team (`team_id`); every managing team may show its
services on it. What a page shows is laid out by `crud.sync_page_layout`: the page's own
order, grouped by each service's group. Invariants kept here:

- slugs and custom domains are unique; a custom domain is stored lower-case without a
  trailing dot, and a new one starts unverified with a fresh token (engine.domains);
- a page shows only services of its teams, each once;
- a page's type is fixed once it was activated (visitors and subscribers rely on it), and
  `activated_at` records the first activation;
- the time zone is a known IANA name.

Whether a domain is Beacon's own (its base URL, the pages domain) is the caller's to check:
the engine does not know the process's host names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any
from zoneinfo import available_timezones

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import crud, deadlines
from .assets import Asset, store_asset
from .changes import UNSET, Unset, given
from .errors import ConflictError, ValidationError
from .models import PageType
from .security import new_token
from .tables import page_teams, services, status_pages, utcnow

#: Changes after which a cached or exported copy of a page may show it to someone who may no
#: longer see it, or where it no longer is: whoever makes one evicts the page at once
#: (`pages.render.evict`: the admin API in its request, `beacon apply` in its command).
ACCESS_FIELDS = frozenset({"active", "type", "slug", "teams", "custom_domain"})

#: The images a page may have, each stored as an asset (`<role>_asset_id`).
IMAGES = ("logo", "favicon")


@dataclass(frozen=True)
class PageFields:
    """A new page. `team_ids` are its managing teams (the first owns it); `service_ids` what
    it shows, in order."""

    slug: str
    name: str
    team_ids: Sequence[int]
    service_ids: Sequence[int] = ()
    type: PageType = PageType.PUBLIC
    time_zone: str = "UTC"
    custom_domain: str | None = None
    active: bool = False
    hide_uptime: bool = False
    notify_component_changes: bool = False
    logo: Asset | None = None
    favicon: Asset | None = None


@dataclass(frozen=True)
class PageChanges:
    """A change to a page. `team_ids` and `service_ids` replace the whole list;
    `custom_domain=None`, `logo=None` and `favicon=None` remove them."""

    name: str | Unset = UNSET
    type: PageType | Unset = UNSET
    team_ids: Sequence[int] | Unset = UNSET
    service_ids: Sequence[int] | Unset = UNSET
    time_zone: str | Unset = UNSET
    custom_domain: str | None | Unset = UNSET
    active: bool | Unset = UNSET
    hide_uptime: bool | Unset = UNSET
    notify_component_changes: bool | Unset = UNSET
    logo: Asset | None | Unset = UNSET
    favicon: Asset | None | Unset = UNSET


def create(conn: Connection, fields: PageFields, *, actor: str) -> int:
    """Create a page; returns its id."""
    team_ids = _teams(fields.team_ids)
    _check_zone(fields.time_zone)
    _check_services(conn, team_ids, fields.service_ids)
    domain = _domain(fields.custom_domain, None)
    _check_unique(conn, None, fields.slug, domain.get("custom_domain"))
    values: dict[str, Any] = {
        "team_id": team_ids[0],
        "slug": fields.slug,
        "name": fields.name,
        "type": PageType(fields.type),
        "time_zone": fields.time_zone,
        "active": fields.active,
        "activated_at": utcnow() if fields.active else None,
        "hide_uptime": fields.hide_uptime,
        "notify_component_changes": fields.notify_component_changes,
        **domain,
        **_images(conn, {"logo": fields.logo, "favicon": fields.favicon}),
    }
    page_id = crud.insert(conn, status_pages, values)
    _set_teams(conn, page_id, team_ids)
    crud.sync_page_layout(conn, page_id, list(fields.service_ids))
    crud.pages_dirty(conn, page_ids=[page_id])
    crud.created(
        conn, status_pages, page_id, actor, "status page", fields.slug, team_id=team_ids[0]
    )
    return page_id


def update(conn: Connection, page_id: int, changes: PageChanges, *, actor: str) -> None:
    """Change a page (nothing given: nothing happens); its layout is made again from the
    services it shows, so a change of teams cannot leave another team's service on it."""
    row = crud.row(conn, status_pages, page_id, "page")
    values = given(changes)
    if not values:
        return
    team_ids = values.pop("team_ids", None)
    wanted = values.pop("service_ids", None)
    images = {role: values.pop(role) for role in IMAGES if role in values}
    if "time_zone" in values:
        _check_zone(values["time_zone"])
    if "type" in values:
        values["type"] = PageType(values["type"])
        if values["type"] != row.type and row.activated_at is not None:
            raise ValidationError("a page's type is fixed once it was activated", field="type")
    if "custom_domain" in values:
        values.update(_domain(values["custom_domain"], row.custom_domain))
        _check_unique(conn, row.id, None, values["custom_domain"])
    if team_ids is not None:
        team_ids = _teams(team_ids)
        _set_teams(conn, row.id, team_ids)
        values["team_id"] = team_ids[0]
    else:
        team_ids = managing_team_ids(conn, row.id) or [row.team_id]
    if wanted is None:
        wanted = crud.page_service_ids(conn, row.id)
    _check_services(conn, team_ids, wanted)
    crud.sync_page_layout(conn, row.id, list(wanted))
    if values.get("active") and row.activated_at is None:
        values["activated_at"] = utcnow()
    values.update(_images(conn, images))
    crud.update(conn, status_pages, row.id, values)
    crud.pages_dirty(conn, page_ids=[row.id])
    crud.audit(
        conn,
        actor,
        "update",
        "status page",
        row.slug,
        team_id=row.team_id,
        detail={"fields": sorted(given(changes))},
    )


def delete(conn: Connection, page_id: int, *, actor: str) -> None:
    """Delete a page (its layout, subscribers and snapshots go with it); marked dirty first,
    so that its render drops it from the cache."""
    row = crud.row(conn, status_pages, page_id, "page")
    crud.pages_dirty(conn, page_ids=[row.id])
    conn.execute(status_pages.delete().where(status_pages.c.id == row.id))
    crud.audit(conn, actor, "delete", "status page", row.slug, team_id=row.team_id)


def normal_domain(domain: str) -> str:
    """A custom domain as it is stored: trimmed, lower-case, without a trailing dot."""
    return domain.strip().lower().rstrip(".")


def _teams(team_ids: Sequence[int]) -> list[int]:
    if not team_ids:
        raise ValidationError("a page needs a managing team", field="teams")
    if len(set(team_ids)) != len(team_ids):
        raise ValidationError("a team is listed twice", field="teams")
    return list(team_ids)


def managing_team_ids(conn: Connection, page_id: int) -> list[int]:
    """The page's managing teams as page_teams lists them, first (the owner) first; empty
    for a page whose page_teams was never filled in (callers fall back to its `team_id`)."""
    return list(
        conn.execute(
            sa.select(page_teams.c.team_id)
            .where(page_teams.c.page_id == page_id)
            .order_by(page_teams.c.position)
        ).scalars()
    )


def _set_teams(conn: Connection, page_id: int, team_ids: Sequence[int]) -> None:
    crud.replace_links(
        conn, page_teams.c.page_id, page_id, page_teams.c.team_id, team_ids, ordered=True
    )


def _check_services(conn: Connection, team_ids: Sequence[int], ids: Sequence[int]) -> None:
    if len(set(ids)) != len(ids):
        raise ValidationError("a service is listed twice", field="services")
    found = set(
        conn.execute(
            sa.select(services.c.id).where(
                services.c.id.in_(list(ids)), services.c.team_id.in_(list(team_ids))
            )
        ).scalars()
    )
    if missing := [i for i in ids if i not in found]:
        raise ValidationError(f"no service {missing[0]} in the page's teams", field="services")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_zone(zone: str) -> None:
    if zone != "UTC" and zone not in _zones():
        raise ValidationError(f"unknown time zone {zone!r}", field="time_zone")


def _check_unique(
    conn: Connection, page_id: int | None, slug: str | None, domain: str | None
) -> None:
    for column, value, what in (
        (status_pages.c.slug, slug, "slug"),
        (status_pages.c.custom_domain, domain, "custom domain"),
    ):
        if value is None:
            continue
        other = conn.execute(sa.select(status_pages.c.id).where(column == value)).scalar()
        if other is not None and other != page_id:
            raise ConflictError(f"{what} {value!r} is already in use")


def _domain(domain: str | None, before: str | None) -> dict[str, Any]:
    """The columns a custom domain sets: a changed one is unverified, with a fresh token."""
    if domain is None:
        return {
            "custom_domain": None,
            "domain_token": None,
            "domain_verified_at": None,
            "domain_error": None,
        }
    domain = normal_domain(domain)
    if domain == before:
        return {"custom_domain": domain}
    return {
        "custom_domain": domain,
        "domain_token": new_token(),
        "domain_verified_at": None,
        "domain_error": None,
    }


# --- custom domain verification ------------------------------------------------------------

#: The deadline of the re-check of verified domains (engine.domain_checks).
DOMAIN_RECHECK = "domains.recheck"
DOMAIN_RECHECK_KEY = "verified"
DOMAIN_RECHECK_EVERY = timedelta(hours=6)


def domain_token(conn: Connection, page_id: int) -> str:
    """The page's TXT verification token, made when first asked for (a conditional update:
    two callers at once agree on one token)."""
    conn.execute(
        status_pages.update()
        .where(status_pages.c.id == page_id, status_pages.c.domain_token.is_(None))
        .values(domain_token=new_token())
    )
    return str(
        conn.execute(
            sa.select(status_pages.c.domain_token).where(status_pages.c.id == page_id)
        ).scalar_one()
    )


def verify_domain(conn: Connection, page_id: int, token: str, *, actor: str) -> bool:
    """Mark the page's custom domain verified (DNS showed it is the page's): from now on it
    is served there and links name it. Only while the page still has the token the check
    used (a domain changed meanwhile is not verified by the old one's proof); false when
    nothing changed. Schedules the periodic re-check."""
    row = crud.row(conn, status_pages, page_id, "page")
    done = conn.execute(
        status_pages.update()
        .where(
            status_pages.c.id == page_id,
            status_pages.c.domain_token == token,
            status_pages.c.custom_domain.is_not(None),
            status_pages.c.domain_verified_at.is_(None),
        )
        .values(domain_verified_at=utcnow(), domain_error=None)
    ).rowcount
    if not done:
        return False
    crud.pages_dirty(conn, page_ids=[page_id])
    crud.audit(
        conn,
        actor,
        "verify domain",
        "status page",
        row.slug,
        team_id=row.team_id,
        detail={"domain": row.custom_domain},
    )
    if deadlines.get(conn, DOMAIN_RECHECK, DOMAIN_RECHECK_KEY) is None:
        deadlines.schedule(
            conn, DOMAIN_RECHECK, DOMAIN_RECHECK_KEY, utcnow() + DOMAIN_RECHECK_EVERY
        )
    return True


def withdraw_domain(
    conn: Connection, page_id: int, domain: str, reason: str, *, actor: str
) -> bool:
    """Stop serving the page on `domain` (its proof is gone from DNS): unverified, with the
    reason kept for its managers, links back on the page's own address. Only if the page
    still has that verified domain; false when nothing changed."""
    row = crud.row(conn, status_pages, page_id, "page")
    done = conn.execute(
        status_pages.update()
        .where(
            status_pages.c.id == page_id,
            status_pages.c.custom_domain == domain,
            status_pages.c.domain_verified_at.is_not(None),
        )
        .values(domain_verified_at=None, domain_error=reason)
    ).rowcount
    if not done:
        return False
    crud.pages_dirty(conn, page_ids=[page_id])
    crud.audit(
        conn,
        actor,
        "withdraw domain",
        "status page",
        row.slug,
        team_id=row.team_id,
        detail={"domain": domain, "reason": reason},
    )
    return True


def _images(conn: Connection, images: Mapping[str, Asset | None]) -> dict[str, int | None]:
    return {
        f"{role}_asset_id": store_asset(conn, asset) if asset is not None else None
        for role, asset in images.items()
    }
