"""Status pages over the admin API: settings, managing teams and the services they show."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import available_timezones

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.exceptions import HTTPException

from engine import crud, domains
from engine.assets import Asset, check_bytes, limit_for, store_asset
from engine.errors import ConflictError, NotFoundError
from engine.pagemodel import page_address
from engine.security import new_token
from engine.tables import page_teams, services, status_pages, teams, utcnow
from pages.errors import FieldErrors
from pages.hosts import own_hosts
from pages.render import evict

from .api import Ctx, Endpoint, fields_set
from .rows import service_ids
from .schemas import PageIn, PageOut, PagePatch

P = "/api/v1/pages"


#: Changes after which a cached copy of the page may show it to someone who may no longer
#: see it, or where it no longer is (`pages.render.evict`).
ACCESS_FIELDS = frozenset({"active", "type", "slug", "teams", "custom_domain"})


def _page_team_ids(conn: Connection, page_id: int) -> list[int]:
    return list(
        conn.execute(
            sa.select(page_teams.c.team_id)
            .where(page_teams.c.page_id == page_id)
            .order_by(page_teams.c.position)
        ).scalars()
    )


def _page(ctx: Ctx, conn: Connection, page_id: int | None = None) -> Any:
    page_id = page_id or ctx.id
    row = conn.execute(sa.select(status_pages).where(status_pages.c.id == page_id)).first()
    if row is None:
        raise NotFoundError(f"no page {page_id}")
    ctx.check(conn, _page_team_ids(conn, row.id) or [row.team_id], f"page {page_id}")
    return row


def _out(ctx: Ctx, conn: Connection, row: Any) -> PageOut:
    ids = _page_team_ids(conn, row.id) or [row.team_id]
    keys = dict(conn.execute(sa.select(teams.c.id, teams.c.key).where(teams.c.id.in_(ids))).all())
    return PageOut.model_validate(
        {
            **row._mapping,
            "teams": [keys[i] for i in ids],
            "services": crud.page_service_ids(conn, row.id),
            # The page itself (its index), not the base its links are made from.
            "url": page_address(
                row.slug,
                row.custom_domain,
                base_url=ctx.base_url,
                pages_domain=ctx.request.app.state.settings.pages_domain,
            )
            + "/",
            "has_logo": row.logo_asset_id is not None,
            "domain_verified": row.domain_verified_at is not None,
            "has_favicon": row.favicon_asset_id is not None,
        }
    )


def _teams(ctx: Ctx, conn: Connection, keys: list[str], before: Sequence[int] = ()) -> list[int]:
    """The managing teams `keys` name. A team that manages the page already (`before`)
    stays without a check; one added or taken off must be the caller's (engine.authz), so
    on a page shared by two teams neither can remove the other."""
    if not keys:
        return [ctx.team_id(conn, None, "teams")]
    if len(set(keys)) != len(keys):
        raise FieldErrors([{"field": "teams", "message": "a team is listed twice"}])
    kept = dict(
        conn.execute(sa.select(teams.c.key, teams.c.id).where(teams.c.id.in_(list(before)))).all()
    )
    chosen = [kept[key] if key in kept else ctx.team_id(conn, key, "teams") for key in keys]
    for removed in set(before) - set(chosen):
        if not ctx.may(conn, ctx.strict_action, [removed]):
            key = next(k for k, v in kept.items() if v == removed)
            raise HTTPException(
                403, f"only team {key!r}'s members or an admin may take it off the page"
            )
    return chosen


def _check_services(conn: Connection, team_ids: list[int], ids: list[int]) -> None:
    if len(set(ids)) != len(ids):
        raise FieldErrors([{"field": "services", "message": "a service is listed twice"}])
    found = set(
        conn.execute(
            sa.select(services.c.id).where(services.c.id.in_(ids), services.c.team_id.in_(team_ids))
        ).scalars()
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise FieldErrors(
            [{"field": "services", "message": f"no service {missing[0]} in the page's teams"}]
        )


def _check_zone(zone: str) -> None:
    if zone != "UTC" and zone not in available_timezones():
        raise FieldErrors([{"field": "time_zone", "message": f"unknown time zone {zone!r}"}])


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


def _domain_values(ctx: Ctx, domain: str | None, before: str | None) -> dict[str, Any]:
    """The columns a (new) custom domain sets: lower-cased, refused when it is Beacon's own
    or under the pages domain, and unverified with a fresh token when it changed."""
    if domain is None:
        return {"custom_domain": None, "domain_token": None, "domain_verified_at": None}
    domain = domain.strip().lower().rstrip(".")
    settings = ctx.request.app.state.settings
    why = domains.refusal(domain, own_hosts(settings), settings.pages_domain)
    if why is not None:
        raise FieldErrors([{"field": "custom_domain", "message": why}])
    if domain == before:
        return {"custom_domain": domain}
    return {"custom_domain": domain, "domain_token": new_token(), "domain_verified_at": None}


def _set_teams(conn: Connection, page_id: int, team_ids: list[int]) -> None:
    conn.execute(page_teams.delete().where(page_teams.c.page_id == page_id))
    conn.execute(
        page_teams.insert(),
        [{"page_id": page_id, "team_id": t, "position": i} for i, t in enumerate(team_ids)],
    )


def list_pages(ctx: Ctx) -> list[PageOut]:
    with ctx.store.read() as conn:
        query = sa.select(status_pages).order_by(status_pages.c.id)
        if not ctx.who.admin:
            visible = sa.select(page_teams.c.page_id).where(ctx.scope(page_teams.c.team_id))
            query = query.where(
                sa.or_(status_pages.c.id.in_(visible), ctx.scope(status_pages.c.team_id))
            )
        return [_out(ctx, conn, row) for row in conn.execute(query)]


def get_page(ctx: Ctx) -> PageOut:
    with ctx.store.read() as conn:
        return _out(ctx, conn, _page(ctx, conn))


def create_page(ctx: Ctx) -> PageOut:
    body: PageIn = ctx.body
    _check_zone(body.time_zone)
    with ctx.store.begin() as conn:
        team_ids = _teams(ctx, conn, body.teams)
        wanted = service_ids(conn, team_ids, body.services, "services")
        _check_services(conn, team_ids, wanted)
        values = body.model_dump(exclude={"teams", "services"})
        values.update(_domain_values(ctx, body.custom_domain, None))
        _check_unique(conn, None, body.slug, values["custom_domain"])
        values.update(team_id=team_ids[0], activated_at=utcnow() if body.active else None)
        inserted = conn.execute(status_pages.insert().values(**values)).inserted_primary_key
        assert inserted is not None
        page_id = int(inserted[0])
        _set_teams(conn, page_id, team_ids)
        crud.sync_page_layout(conn, page_id, wanted)
        crud.pages_dirty(conn, page_ids=[page_id])
        ctx.audit(conn, "create", "status page", body.slug, team_ids[0])
        return _out(ctx, conn, _page(ctx, conn, page_id))


def update_page(ctx: Ctx) -> PageOut:
    changes = fields_set(ctx.body)
    with ctx.store.begin() as conn:
        row = _page(ctx, conn)
        values = {
            k: v
            for k, v in changes.items()
            if k not in ("teams", "services") and (v is not None or k == "custom_domain")
        }
        if "time_zone" in values:
            _check_zone(values["time_zone"])
        if "type" in values and values["type"] != row.type and row.activated_at is not None:
            raise FieldErrors(
                [{"field": "type", "message": "a page's type is fixed once it was activated"}]
            )
        if "custom_domain" in values:
            values.update(_domain_values(ctx, values["custom_domain"], row.custom_domain))
        _check_unique(conn, row.id, None, values.get("custom_domain"))
        team_ids = _page_team_ids(conn, row.id) or [row.team_id]
        if changes.get("teams"):
            team_ids = _teams(ctx, conn, changes["teams"], team_ids)
            _set_teams(conn, row.id, team_ids)
            values["team_id"] = team_ids[0]
        wanted = changes.get("services")
        if wanted is None:
            wanted = crud.page_service_ids(conn, row.id)
        else:
            wanted = service_ids(conn, team_ids, wanted, "services")
        _check_services(conn, team_ids, wanted)
        crud.sync_page_layout(conn, row.id, wanted)
        if values.get("active") and row.activated_at is None:
            values["activated_at"] = utcnow()
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == row.id)
            .values(**values, updated_at=utcnow())
        )
        crud.pages_dirty(conn, page_ids=[row.id])
        ctx.audit(conn, "update", "status page", row.slug, row.team_id, fields=sorted(changes))
        out = _out(ctx, conn, _page(ctx, conn))
    if ACCESS_FIELDS & changes.keys():
        # Who may see the page, or where, may have changed: every cached copy ends now.
        evict(ctx.request.app.state.runtime, row.id, row.slug)
    return out


def delete_page(ctx: Ctx) -> None:
    with ctx.store.begin() as conn:
        row = _page(ctx, conn)
        for team_id in _page_team_ids(conn, row.id):
            # A page shared by two teams is deleted by both, or an admin: never by one.
            if not ctx.may(conn, ctx.strict_action, [team_id]):
                raise HTTPException(
                    403, "this page is shared with another team: only an admin may delete it"
                )
        crud.pages_dirty(conn, page_ids=[row.id])
        conn.execute(status_pages.delete().where(status_pages.c.id == row.id))
        ctx.audit(conn, "delete", "status page", row.slug, row.team_id)
    evict(ctx.request.app.state.runtime, row.id, row.slug)


def _image(role: str) -> Callable[[Ctx], PageOut]:
    def put_image(ctx: Ctx) -> PageOut:
        try:
            asset = check_bytes(ctx.body, role=role)
        except ValueError as exc:
            raise FieldErrors([{"field": "body", "message": str(exc)}]) from None
        return _set_image(ctx, role, asset)

    put_image.__name__ = f"put_{role}"
    put_image.__doc__ = f"Upload the page's {role} (the type is read from the bytes)."
    return put_image


def _clear_image(role: str) -> Callable[[Ctx], PageOut]:
    def delete_image(ctx: Ctx) -> PageOut:
        return _set_image(ctx, role, None)

    delete_image.__name__ = f"delete_{role}"
    return delete_image


def _set_image(ctx: Ctx, role: str, asset: Asset | None) -> PageOut:
    with ctx.store.begin() as conn:
        row = _page(ctx, conn)
        asset_id = store_asset(conn, asset) if asset is not None else None
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == row.id)
            .values(**{f"{role}_asset_id": asset_id}, updated_at=utcnow())
        )
        crud.pages_dirty(conn, page_ids=[row.id])
        ctx.audit(conn, "update", "status page", row.slug, row.team_id, fields=[role])
        return _out(ctx, conn, _page(ctx, conn))


ENDPOINTS = [
    Endpoint("GET", P, list_pages, "List status pages", "pages", response=PageOut, many=True),
    Endpoint("POST", P, create_page, "Create a status page", "pages", PageIn, PageOut, status=201),
    Endpoint("GET", P + "/{id:int}", get_page, "Get a status page", "pages", response=PageOut),
    Endpoint(
        "PATCH", P + "/{id:int}", update_page, "Change a status page", "pages", PagePatch, PageOut
    ),
    Endpoint("DELETE", P + "/{id:int}", delete_page, "Delete a status page", "pages", status=204),
    *(
        endpoint
        for role in ("logo", "favicon")
        for endpoint in (
            Endpoint(
                "PUT",
                f"{P}/{{id:int}}/{role}",
                _image(role),
                f"Upload the page's {role} (PNG, JPEG, GIF, WebP, SVG; a favicon also ICO)",
                "pages",
                response=PageOut,
                raw_limit=limit_for(role),
            ),
            Endpoint(
                "DELETE",
                f"{P}/{{id:int}}/{role}",
                _clear_image(role),
                f"Remove the page's {role}",
                "pages",
                response=PageOut,
            ),
        )
    ),
]
