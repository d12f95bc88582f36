"""Status pages over the admin API: settings, managing teams and the services they show.

Writes go through `engine.statuspages` (validate -> call -> serialise). What only this
process knows stays here: which host names are Beacon's own, refused as custom domains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.exceptions import HTTPException

from engine import crud, domains
from engine import statuspages as page_writes
from engine.assets import Asset, check_bytes, limit_for
from engine.errors import NotFoundError
from engine.pagemodel import linked_domain, page_address
from engine.tables import page_teams, status_pages, teams
from pages.errors import FieldErrors
from pages.hosts import own_hosts
from pages.render import evict

from .api import Ctx, Endpoint, fields_set
from .rows import service_ids
from .schemas import PageIn, PageOut, PagePatch

P = "/api/v1/pages"


ACCESS_FIELDS = page_writes.ACCESS_FIELDS


def _page(ctx: Ctx, conn: Connection, page_id: int | None = None) -> Any:
    page_id = page_id or ctx.id
    row = conn.execute(sa.select(status_pages).where(status_pages.c.id == page_id)).first()
    if row is None:
        raise NotFoundError(f"no page {page_id}")
    ctx.check(conn, page_writes.managing_team_ids(conn, row.id) or [row.team_id], f"page {page_id}")
    return row


def _out(ctx: Ctx, conn: Connection, row: Any) -> PageOut:
    ids = page_writes.managing_team_ids(conn, row.id) or [row.team_id]
    keys = dict(conn.execute(sa.select(teams.c.id, teams.c.key).where(teams.c.id.in_(ids))).all())
    return PageOut.model_validate(
        {
            **row._mapping,
            "teams": [keys[i] for i in ids],
            "services": crud.page_service_ids(conn, row.id),
            # The page itself (its index), not the base its links are made from.
            "url": page_address(
                row.slug,
                linked_domain(row.custom_domain, row.domain_verified_at),
                base_url=ctx.base_url,
                pages_domain=ctx.request.app.state.settings.pages_domain,
            )
            + "/",
            "has_logo": row.logo_asset_id is not None,
            "domain_verified": row.domain_verified_at is not None,
            "domain_withdrawn_because": row.domain_error
            if row.domain_verified_at is None
            else None,
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


def _check_domain(ctx: Ctx, domain: str | None) -> None:
    """A custom domain may not be Beacon's own host, nor one under the pages domain."""
    if domain is None:
        return
    settings = ctx.request.app.state.settings
    why = domains.refusal(
        page_writes.normal_domain(domain), own_hosts(settings), settings.pages_domain
    )
    if why is not None:
        raise FieldErrors([{"field": "custom_domain", "message": why}])


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
    _check_domain(ctx, body.custom_domain)
    with ctx.begin() as conn:
        team_ids = _teams(ctx, conn, body.teams)
        fields = page_writes.PageFields(
            **body.model_dump(exclude={"teams", "services"}),
            team_ids=team_ids,
            service_ids=service_ids(conn, team_ids, body.services, "services"),
        )
        page_id = page_writes.create(conn, fields, actor=ctx.who.actor)
        return _out(ctx, conn, _page(ctx, conn, page_id))


def update_page(ctx: Ctx) -> PageOut:
    # A null `custom_domain` removes it; other nulls change nothing.
    asked = fields_set(ctx.body)
    changes = {k: v for k, v in asked.items() if v is not None or k == "custom_domain"}
    with ctx.begin() as conn:
        row = _page(ctx, conn)
        _check_domain(ctx, changes.get("custom_domain"))
        team_ids = page_writes.managing_team_ids(conn, row.id) or [row.team_id]
        if "teams" in changes:
            chosen = _teams(ctx, conn, changes.pop("teams"), team_ids)
            team_ids = changes["team_ids"] = chosen
        if "services" in changes:
            wanted = changes.pop("services")
            changes["service_ids"] = service_ids(conn, team_ids, wanted, "services")
        page_writes.update(conn, row.id, page_writes.PageChanges(**changes), actor=ctx.who.actor)
        out = _out(ctx, conn, _page(ctx, conn))
    if ACCESS_FIELDS & asked.keys():
        # Who may see the page, or where, may have changed: every cached copy ends now.
        evict(ctx.request.app.state.runtime, row.id, row.slug)
    return out


def delete_page(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = _page(ctx, conn)
        for team_id in page_writes.managing_team_ids(conn, row.id):
            # A page shared by two teams is deleted by both, or an admin: never by one.
            if not ctx.may(conn, ctx.strict_action, [team_id]):
                raise HTTPException(
                    403, "this page is shared with another team: only an admin may delete it"
                )
        page_writes.delete(conn, row.id, actor=ctx.who.actor)
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
    with ctx.begin() as conn:
        row = _page(ctx, conn)
        changes = (
            page_writes.PageChanges(logo=asset)
            if role == "logo"
            else page_writes.PageChanges(favicon=asset)
        )
        page_writes.update(conn, row.id, changes, actor=ctx.who.actor)
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
