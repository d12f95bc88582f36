"""A page's Subscribers tab: the notification options its type allows, the subscribers
listed, searched and paged, one added or removed, a CSV imported or exported.

Every action calls the admin API's own handler (`pages.admin.subscribers`), so the UI gets
its checks (manage subscribers on the page's teams), validation, audit entries and the
import's all-or-nothing rule. A webhook's URL is a secret: only its host is shown.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine import subscriber_admin as admin
from engine import subscribers as subs
from engine.authz import Action, authorize, team_target
from engine.errors import NotFoundError
from engine.models import SubscriberChannel
from pages.admin import subscribers as api
from pages.admin.schemas import MAX_ID
from pages.admin.subscribers import ImportFile
from pages.auth import Principal

from .web import NO_STORE, Problem, form_of, model, redirect, render, text, view
from .web import call as call_api

PAGE_SIZE = 100
STATES = [s.value for s in admin.State]
CHANNELS = [c.value for c in SubscriberChannel]


def shown_address(channel: str, address: str) -> str:
    """The address as the UI shows it: a webhook's host only (its URL is a secret)."""
    if channel == "webhook":
        host = urlsplit(address).hostname or "?"
        return f"webhook to {host}"
    return address


def _check(request: Request, who: Principal, page_id: int) -> subs.Page:
    """The page, when `who` manages its subscribers (engine.authz, MANAGE_SUBSCRIBERS on
    its teams); else 404, as the web UI answers whatever a caller may not do, even to a
    responder who may read the page itself."""
    if not 1 <= page_id <= MAX_ID:  # beyond the store's integers: no such page
        raise NotFoundError(f"no page {page_id}")
    with request.app.state.store.read() as conn:
        page = subs.page_by_id(conn, page_id)
        if page is None:
            raise NotFoundError(f"no page {page_id}")
        target = team_target(conn, sorted(page.team_ids))
    if not authorize(who, Action.MANAGE_SUBSCRIBERS, target).allowed:
        raise NotFoundError(f"no page {page_id}")
    return page


async def _page(request: Request, who: Principal) -> subs.Page:
    return await run_in_threadpool(_check, request, who, request.path_params["id"])


def _components(request: Request, page_id: int) -> list[subs.Component]:
    with request.app.state.store.read() as conn:
        return subs.page_components(conn, page_id)


async def _tab(
    request: Request,
    who: Principal,
    page: subs.Page,
    status: int = 200,
    **extra: Any,
) -> Response:
    """The tab: options, the add and import forms, the search and one page of results."""
    params = request.query_params
    try:
        listing = await call_api(request, who, api.list_subscribers, id=page.id)
        problem = extra.pop("problem", None)
    except Problem as exc:  # a bad search: shown beside the search form
        listing = api.SubscriberList(subscribers=[], total=0, next_before=None)
        problem = exc
    older = None
    if listing.next_before is not None:
        kept = {k: v for k, v in params.items() if k in ("q", "channel", "state") and v}
        older = "?" + urlencode({**kept, "before": listing.next_before})
    options = api.channel_options(request.app.state.settings, page)
    components = await run_in_threadpool(_components, request, page.id)
    return render(
        request,
        who,
        "subscribers.html",
        status,
        page=page,
        listing=listing,
        older=older,
        q=params.get("q", "")[:200],
        channel=params.get("channel", ""),
        state=params.get("state", ""),
        paged=bool(params.get("before")),
        channels=CHANNELS,
        states=STATES,
        options=options,
        addable=[o for o in options if o.available],
        components=components,
        shown=shown_address,
        problem=problem,
        **extra,
    )


@view()
async def subscriber_list(request: Request, who: Principal) -> Response:
    page = await _page(request, who)
    return await _tab(request, who, page)


@view()
async def add(request: Request, who: Principal) -> Response:
    """Add one subscriber with an option the page allows; a webhook's secret is shown on
    the answer itself, once (no redirect: it would have to be kept somewhere)."""
    form = await form_of(request)
    page = await _page(request, who)
    values = {
        "channel": text(form, "channel"),
        "address": text(form, "address"),
        "user": text(form, "user"),
        "services": [s for s in form.getlist("services") if isinstance(s, str) and s] or None,
        "skip_confirmation": bool(form.get("skip_confirmation")),
    }
    try:
        body = model(api.SubscriberIn, values)
        added = await call_api(request, who, api.add_subscriber, body, id=page.id)
    except Problem as exc:
        return await _tab(request, who, page, 422, problem=exc, adding=values)
    shown = shown_address(added.channel, added.address)
    if added.signing_secret:
        return await _tab(request, who, page, 201, added=added, added_shown=shown)
    note = {
        "sent": "a confirmation is on its way",
        "skipped": "confirmation skipped",
        "not needed": "confirmed",
    }[added.confirmation]
    return redirect(request, f"/admin/pages/{page.id}/subscribers", f"Added {shown} ({note}).")


@view()
async def import_csv(request: Request, who: Principal) -> Response:
    """Import a CSV file: all or nothing, each problem shown with its row and column."""
    form = await form_of(request)
    page = await _page(request, who)
    upload = form.get("file")
    skip = bool(form.get("skip_confirmation"))
    if not isinstance(upload, UploadFile) or not upload.filename:
        problem = Problem([{"field": "file", "message": "choose a CSV file"}])
        return await _tab(request, who, page, 422, problem=problem, importing=True)
    try:
        data = await upload.read(admin.MAX_IMPORT_BYTES + 1)
    finally:
        await upload.close()
    if len(data) > admin.MAX_IMPORT_BYTES:
        message = f"the file is over the limit of {admin.MAX_IMPORT_BYTES} bytes"
        problem = Problem([{"field": "file", "message": message}])
        return await _tab(request, who, page, 413, problem=problem, importing=True)
    try:
        done = await call_api(
            request, who, api.import_subscribers, ImportFile(data, skip), id=page.id
        )
    except Problem as exc:
        return await _tab(request, who, page, 422, problem=exc, importing=True)
    what = (
        "confirmation skipped, as you said they confirmed elsewhere"
        if skip
        else f"{done.confirmations_sent} confirmation"
        f"{'' if done.confirmations_sent == 1 else 's'} on their way"
    )
    flash = (
        f"Imported {done.imported} subscriber{'' if done.imported == 1 else 's'} ({what}); "
        f"{done.already_subscribed} {'was' if done.already_subscribed == 1 else 'were'} "
        "subscribed already."
    )
    return redirect(request, f"/admin/pages/{page.id}/subscribers", flash)


@view()
async def export(request: Request, who: Principal) -> Response:
    """Every subscriber of the page as CSV (the API's export: webhooks by host)."""
    page = await _page(request, who)
    answer: Response = await call_api(request, who, api.export_subscribers, id=page.id)
    answer.headers.update(NO_STORE)
    return answer


@view()
async def remove(request: Request, who: Principal) -> Response:
    """Remove one subscriber, as their own unsubscribe link would."""
    await form_of(request)
    page = await _page(request, who)
    subscriber_id = request.path_params["sid"]
    found = await call_api(request, who, api.get_subscriber, id=page.id, sid=subscriber_id)
    await call_api(request, who, api.remove_subscriber, id=page.id, sid=subscriber_id)
    shown = shown_address(found.channel, found.address)
    return redirect(request, f"/admin/pages/{page.id}/subscribers", f"Removed {shown}.")


routes: list[BaseRoute] = [
    Route("/admin/pages/{id:int}/subscribers", subscriber_list, methods=["GET", "HEAD"]),
    Route("/admin/pages/{id:int}/subscribers", add, methods=["POST"]),
    Route("/admin/pages/{id:int}/subscribers.csv", export, methods=["GET", "HEAD"]),
    Route("/admin/pages/{id:int}/subscribers/import", import_csv, methods=["POST"]),
    Route("/admin/pages/{id:int}/subscribers/{sid:int}/remove", remove, methods=["POST"]),
]
