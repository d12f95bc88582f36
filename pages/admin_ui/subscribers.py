"""A page's subscribers in the admin UI: list and search them, remove one, export them as
CSV. Webhook addresses are secrets (DESIGN.md): only their host is shown or exported.
Importing waits for the notification work's subscriber API."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine import crud
from engine import subscribers as subs
from engine.authz import Action, authorize, team_target
from engine.errors import NotFoundError
from engine.tables import subscribers, teams
from pages.admin import statuspages as api
from pages.auth import Principal

from .web import NO_STORE, form_of, redirect, render, view
from .web import call as call_api

PAGE_SIZE = 200
CHANNELS = ("email", "sms", "webhook", "user")


def shown_address(channel: str, address: str) -> str:
    """The address as the UI shows it: a webhook's host only (its URL is a secret)."""
    if channel == "webhook":
        host = urlsplit(address).hostname or "?"
        return f"webhook to {host}"
    return address


def _check(request: Request, who: Principal, page: Any) -> None:
    """Subscribers are people's addresses: only those who manage the page's subscribers
    (engine.authz, MANAGE_SUBSCRIBERS on the page's teams) see them, not every reader."""
    with request.app.state.store.read() as conn:
        ids = conn.execute(sa.select(teams.c.id).where(teams.c.key.in_(page.teams))).scalars()
        target = team_target(conn, list(ids))
    if not authorize(who, Action.MANAGE_SUBSCRIBERS, target).allowed:
        raise NotFoundError(f"no page {page.id}")


async def _page(request: Request, who: Principal) -> Any:
    page = await call_api(request, who, api.get_page, id=request.path_params["id"])
    await run_in_threadpool(_check, request, who, page)
    return page


def _rows(request: Request, page_id: int, q: str, channel: str, limit: int | None) -> list[Any]:
    query = (
        sa.select(subscribers)
        .where(subscribers.c.page_id == page_id)
        .order_by(subscribers.c.id.desc())
    )
    if q:
        query = query.where(subscribers.c.address.contains(q.lower(), autoescape=True))
    if channel in CHANNELS:
        query = query.where(subscribers.c.channel == channel)
    if limit:
        query = query.limit(limit)
    with request.app.state.store.read() as conn:
        return list(conn.execute(query))


@view()
async def subscriber_list(request: Request, who: Principal) -> Response:
    page = await _page(request, who)
    q = request.query_params.get("q", "").strip()[:200]
    channel = request.query_params.get("channel", "")
    rows = await run_in_threadpool(_rows, request, page.id, q, channel, PAGE_SIZE + 1)
    return render(
        request,
        who,
        "subscribers.html",
        page=page,
        rows=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        q=q,
        channel=channel,
        channels=CHANNELS,
        shown=shown_address,
    )


def _cell(value: str) -> str:
    # A spreadsheet runs a cell that starts with one of these as a formula.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@view()
async def export(request: Request, who: Principal) -> Response:
    """Every subscriber of the page as CSV (webhooks by host)."""
    page = await _page(request, who)
    rows = await run_in_threadpool(_rows, request, page.id, "", "", None)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["channel", "address", "services", "confirmed", "created_at"])
    for row in rows:
        writer.writerow(
            [
                row.channel,
                _cell(shown_address(row.channel, row.address)),
                " ".join(row.services or []),
                "yes" if row.confirmed else "no",
                row.created_at.isoformat() if row.created_at else "",
            ]
        )
    headers = {
        **NO_STORE,
        "Content-Disposition": f'attachment; filename="{page.slug}-subscribers.csv"',
    }
    return Response(out.getvalue(), headers=headers, media_type="text/csv; charset=utf-8")


@view()
async def remove(request: Request, who: Principal) -> Response:
    """Remove one subscriber (`engine.subscribers.unsubscribe`, as their own link would)."""
    page_id = request.path_params["id"]
    await form_of(request)
    page = await _page(request, who)
    subscriber_id = request.path_params["sid"]

    def write() -> str:
        with request.app.state.store.begin() as conn:
            row = conn.execute(
                sa.select(subscribers).where(
                    subscribers.c.id == subscriber_id, subscribers.c.page_id == page.id
                )
            ).first()
            if row is None:
                raise NotFoundError(f"no subscriber {subscriber_id}")
            subs.unsubscribe(conn, page.id, row.unsubscribe_token)
            shown = shown_address(row.channel, row.address)
            team_id = conn.execute(
                sa.select(teams.c.id).where(teams.c.key == page.teams[0])
            ).scalar()
            crud.audit(
                conn, who.actor, "delete", "subscriber", f"{page.slug}: {shown}", team_id=team_id
            )
            return shown

    shown = await run_in_threadpool(write)
    return redirect(request, f"/admin/pages/{page_id}/subscribers", f"Removed {shown}.")


routes: list[BaseRoute] = [
    Route("/admin/pages/{id:int}/subscribers", subscriber_list, methods=["GET", "HEAD"]),
    Route("/admin/pages/{id:int}/subscribers.csv", export, methods=["GET", "HEAD"]),
    Route("/admin/pages/{id:int}/subscribers/{sid:int}/remove", remove, methods=["POST"]),
]
