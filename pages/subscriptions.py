"""Subscription flows: subscribe, confirm (double opt-in), manage, unsubscribe.

`POST /p/{slug}/subscribe` takes form or JSON fields `channel` (`email`, `sms`, `webhook`),
`address` and optional `services` (service keys of the page). It answers JSON when the
request is JSON (or asks for it), else a small HTML page. Email and SMS get a confirmation
message (outbox `notify.subscriber_confirm`, sent by `workers.fanout`); the answer is the same
whether or not the address was subscribed already, so it tells nobody who subscribes.
Confirmations are rate-limited per address. Webhooks are confirmed at once and get a signing
secret, shown once. A private page takes subscriptions only from signed-in members, as
channel `user`.

Links in messages use `BEACON_BASE_URL` and `/p/{slug}/...`, which work on every host. No
link changes anything on GET (mail scanners fetch links): confirming, unsubscribing and
changing the services followed are buttons that POST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engine import authz, outbox
from engine import subscriber_links as links
from engine import subscribers as subs
from engine.errors import ValidationError
from engine.models import SubscriberChannel
from engine.security import new_token
from engine.tables import users

from .auth import Principal, principal
from .errors import FieldErrors
from .login import Limiter, client_address, html, limiter
from .sessions import csrf_token

#: Confirmation messages per address: one per 10 minutes and a few a day, so subscribing
#: again (by its owner or by someone else) cannot flood an inbox or a phone.
CONFIRMATION_LIMITS = ((1, 600), (5, 86400))
#: Subscribe requests per client address and 10 minutes.
SUBSCRIBES_PER_WINDOW = 30
MAX_BODY = 16 * 1024


@dataclass(frozen=True)
class Fields:
    channel: str
    address: str
    services: list[str] | None


def page_url(request: Request, page: subs.Page) -> str:
    settings = request.app.state.settings
    return page.url(settings.base_url, settings.pages_domain)


def _wants_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def _fields(request: Request) -> Fields:
    """The request's fields from JSON or a form; a 400/422 that says what is wrong."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise HTTPException(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HTTPException(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "body must be a JSON object")
        unknown = sorted(set(data) - {"channel", "address", "services"})
        if unknown:
            raise FieldErrors([{"field": k, "message": "unknown field"} for k in unknown])
        services = data.get("services")
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form(max_files=0, max_fields=64)
        data = {k: form.get(k) for k in ("channel", "address")}
        found = [str(v) for v in form.getlist("services")]
        # A form sends one field per checkbox, or one comma-separated text field.
        services = [p for v in found for p in v.split(",")] if found else None
    else:
        raise HTTPException(
            415, "send application/json or a form (application/x-www-form-urlencoded)"
        )
    errors = []
    for name in ("channel", "address"):
        if data.get(name) is not None and not isinstance(data.get(name), str):
            errors.append({"field": name, "message": "must be a string"})
    if services is not None and (
        not isinstance(services, list) or not all(isinstance(s, str) for s in services)
    ):
        errors.append({"field": "services", "message": "must be a list of service keys"})
    if errors:
        raise FieldErrors(errors)
    return Fields(str(data.get("channel") or ""), str(data.get("address") or ""), services)


def _email_transport(request: Request) -> str:
    return str(request.app.state.settings.email_transport)


def _page(request: Request) -> subs.Page:
    slug = request.path_params["slug"]
    with request.app.state.store.read() as conn:
        page = subs.page_by_slug(conn, slug)
    if page is None or not page.active:
        raise HTTPException(404, f"no status page {slug!r}")
    return page


def _subscribe(
    request: Request, page: subs.Page, fields: Fields, user_id: int | None
) -> subs.Subscription:
    limits = [
        limiter(request, f"confirm-{window}", count, window)
        for count, window in CONFIRMATION_LIMITS
    ]
    with request.app.state.store.begin() as conn:
        address = fields.address
        channel = fields.channel or ("user" if page.private else "email")
        if page.private:
            if fields.channel not in ("", "user"):
                raise ValidationError(
                    "this page is private: members subscribe while signed in (channel user)",
                    field="channel",
                )
            channel = "user"
            address = conn.execute(
                sa.select(users.c.email).where(users.c.id == user_id)
            ).scalar_one()
        if channel == SubscriberChannel.EMAIL and _email_transport(request) == "none":
            # Better refused than a visitor waiting for an email that cannot be sent.
            raise ValidationError(
                "this status page cannot send email: subscribe another way", field="channel"
            )
        if channel == SubscriberChannel.SMS and not request.app.state.settings.twilio_account_sid:
            raise ValidationError(
                "this status page cannot send text messages: subscribe another way",
                field="channel",
            )
        if (
            channel == SubscriberChannel.WEBHOOK
            and not request.app.state.settings.webhook_allow_private
            and subs.literal_private_host(address.strip())
        ):
            # Names are resolved and checked again at each send; a literal is refused now.
            raise ValidationError(
                "the webhook URL points at a loopback or private address", field="address"
            )
        found = subs.subscribe(conn, page, channel, address, fields.services, user_id=user_id)
        if found.confirm_token and _may_confirm(limits, found):
            outbox.emit(
                conn,
                subs.CONFIRM,
                {"subscriber_id": found.subscriber_id, "nonce": new_token()},
            )
    return found


def _may_confirm(limits: list[Limiter], found: subs.Subscription) -> bool:
    key = (str(found.channel), found.address)
    if any(limit.retry_after(*key) is not None for limit in limits):
        return False
    for limit in limits:
        limit.hit(*key)
    return True


def _member(who: Principal, page: subs.Page) -> bool:
    """Whether engine.authz lets the signed-in `who` subscribe to the private `page`."""
    target = authz.Target(page.team_ids, open_to_all=False, active=page.active)
    return authz.may(who, authz.Action.SUBSCRIBE, target)


async def subscribe(request: Request) -> Response:
    """Subscribe to the page; see the module docstring for the answers."""
    as_json = _wants_json(request)
    page = await run_in_threadpool(_page, request)
    user_id: int | None = None
    if page.private:
        who = await run_in_threadpool(principal, request)
        if who is None:
            if as_json:
                raise HTTPException(401, "sign in to subscribe to this private page")
            return RedirectResponse(f"/login?next=/p/{page.slug}/", 303)
        if not _member(who, page):
            raise HTTPException(404, f"no status page {page.slug!r}")
        if who.user_id is None:
            raise HTTPException(403, "members subscribe as themselves: sign in (not an API key)")
        user_id = who.user_id
    requests = limiter(request, "subscribe", SUBSCRIBES_PER_WINDOW, 600)
    if not await run_in_threadpool(requests.take, client_address(request)):
        message = "Too many subscribe requests from your address; try again later."
        if as_json:
            raise HTTPException(429, message, {"Retry-After": "600"})
        response = _error(request, page, 429, "We could not subscribe you", message)
        response.headers["Retry-After"] = "600"
        return response
    try:
        fields = await _fields(request)
        found = await run_in_threadpool(_subscribe, request, page, fields, user_id)
    except (FieldErrors, ValidationError) as exc:
        if as_json:
            raise
        message = str(exc) if isinstance(exc, ValidationError) else _field_text(exc)
        return _error(request, page, 422, "We could not subscribe you", message, retry=True)
    except HTTPException as exc:
        if as_json:
            raise
        return _error(request, page, exc.status_code, "We could not subscribe you", exc.detail)
    request.app.state.runtime.nudge.set()
    return _answer(request, page, found, as_json)


def _form_context(request: Request, page: subs.Page, user_id: int | None) -> dict[str, Any]:
    with request.app.state.store.read() as conn:
        components = subs.page_components(conn, page.id)
        email = (
            conn.execute(sa.select(users.c.email).where(users.c.id == user_id)).scalar()
            if user_id is not None
            else None
        )
    return {"components": components, "user_email": email}


async def subscribe_form(request: Request) -> Response:
    """The subscribe form: channel, address and the page's services to follow (a member's
    email on a private page). `?services=api,db` ticks services in advance."""
    page = await run_in_threadpool(_page, request)
    user_id: int | None = None
    if page.private:
        who = await run_in_threadpool(principal, request)
        if who is None:
            return RedirectResponse(f"/login?next={request.url.path}", 303)
        if not _member(who, page):
            raise HTTPException(404, f"no status page {page.slug!r}")
        if who.user_id is None:
            raise HTTPException(403, "members subscribe as themselves: sign in (not an API key)")
        user_id = who.user_id
    context = await run_in_threadpool(_form_context, request, page, user_id)
    chosen = request.query_params.get("services", "").split(",")
    return html(
        "subscribe_form.html",
        page=page,
        page_url=page_url(request, page),
        chosen=[c for c in chosen if c],
        # A signed-in member's form must carry it (pages.sessions.CrossSiteGuard).
        csrf=csrf_token(request),
        **context,
    )


def _field_text(exc: FieldErrors) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors)


def _answer(request: Request, page: subs.Page, found: subs.Subscription, as_json: bool) -> Response:
    base = page_url(request, page)
    body: dict[str, Any] = {
        "channel": found.channel,
        "address": found.address,
        "services": found.services,
    }
    if found.channel in (SubscriberChannel.EMAIL, SubscriberChannel.SMS):
        # The same answer for new, pending and confirmed addresses.
        kept = found.channel == SubscriberChannel.EMAIL and _email_transport(request) == "outbox"
        message = f"If {found.address} is not subscribed yet, a confirmation is on its way."
        if kept:
            # Embedded mode without a provider: nothing reaches the inbox (outbox_email).
            message = (
                f"If {found.address} is not subscribed yet, a confirmation was written, but "
                "this status page cannot send email yet: its operator has it and can pass "
                "on the link."
            )
        body.update(status="pending_confirmation", message=message)
        if as_json:
            return JSONResponse(body, 202)
        return html("subscribe_pending.html", 202, page=page, page_url=base, kept=kept, **body)
    body["status"] = "subscribed"
    unsubscribe_url = None
    # The unsubscribe link and the secret go only to whoever made them: anyone can post a
    # known webhook URL again, and must learn nothing from it.
    if found.created or found.webhook_secret or found.channel == SubscriberChannel.USER:
        unsubscribe_url = f"{base}/subscriptions/unsubscribe/{found.unsubscribe_token}"
        body["unsubscribe_url"] = unsubscribe_url
    if found.webhook_secret:
        body["signing_secret"] = found.webhook_secret
        # Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature (v1,<base64>).
        body["signature_scheme"] = "standard-webhooks"
    status = 201 if found.created else 200
    if as_json:
        return JSONResponse(body, status)
    return html(
        "subscribe_done.html",
        status,
        page=page,
        page_url=base,
        created=found.created,
        address=found.address,
        services=found.services,
        secret=found.webhook_secret,
        unsubscribe_url=unsubscribe_url,
    )


def _error(
    request: Request, page: Any, status: int, title: str, message: str, retry: bool = False
) -> Response:
    base = page_url(request, page) if isinstance(page, subs.Page) else ""
    shown = page if page is not None else {"name": "Beacon"}
    return html(
        "subscribe_error.html",
        status,
        page=shown,
        page_url=base,
        title=title,
        message=message,
        retry_url=request.url.path if retry else None,
    )


def _shown(page: subs.Page | None) -> subs.Page | None:
    """The page a link's error may name: a public, active one. A made-up token on a private
    or inactive page learns nothing of it, not even its name (engine.authz: 404)."""
    return page if page is not None and page.active and not page.private else None


def _any_page(request: Request) -> subs.Page | None:
    with request.app.state.store.read() as conn:
        return subs.page_by_slug(conn, request.path_params["slug"])


def _confirm(request: Request, page_id: int, token: str, write: bool) -> Any:
    if not write:
        with request.app.state.store.read() as conn:
            return subs.by_confirm_token(conn, page_id, token)
    with request.app.state.store.begin() as conn:
        return subs.confirm(conn, page_id, token)


def _links(request: Request, base: str, row: Any) -> dict[str, str]:
    """The subscriber's own links: both carry its link token, the credential of every
    message's link, made again from the secret key (engine.subscriber_links)."""
    token = links.link_token(request.app.state.store.keyring, row)
    return {
        "manage_url": f"{base}/subscriptions/manage/{token}",
        "unsubscribe_url": f"{base}/subscriptions/unsubscribe/{token}",
    }


async def confirm(request: Request) -> Response:
    """The link in a confirmation message. GET shows a button and changes nothing (mail
    scanners fetch links, and must not confirm on someone's behalf); POST confirms."""
    page = await run_in_threadpool(_any_page, request)
    token = request.path_params["token"]
    write = request.method == "POST"
    row = await run_in_threadpool(_confirm, request, page.id, token, write) if page else None
    as_json = _wants_json(request)
    if page is None or row is None:
        if as_json:
            raise HTTPException(404, "this confirmation link is not valid (any more)")
        return _error(
            request,
            _shown(page),
            404,
            "Link not valid",
            "This confirmation link is not valid (any more). Subscribe again on the status page.",
        )
    base = page_url(request, page)
    if not write and not row.confirmed:
        return html(
            "subscribe_confirm.html",
            page=page,
            page_url=base,
            address=subs.shown(row),
            services=row.services,
        )
    if as_json:
        return JSONResponse({"status": "confirmed", "address": subs.shown(row)})
    return html(
        "subscribe_confirmed.html",
        page=page,
        page_url=base,
        address=subs.shown(row),
        services=row.services,
        **_links(request, base, row),
    )


def _by_token(request: Request, page_id: int, token: str) -> Any:
    with request.app.state.store.read() as conn:
        return subs.by_unsubscribe_token(conn, page_id, token)


def _manageable(request: Request, page: subs.Page, token: str) -> Any:
    """The subscriber whose manage link this is, or None. On a private page, only while its
    user may still hear the page: a member who left its teams keeps old messages whose link
    would go on showing them the page's services (their unsubscribe link still works)."""
    with request.app.state.store.read() as conn:
        row = subs.by_unsubscribe_token(conn, page.id, token)
        if row is not None and page.private:
            if row.user_id is None or not subs.user_may_hear(conn, page, row.user_id):
                return None
        return row


def _unsubscribe(request: Request, page_id: int, token: str) -> bool:
    with request.app.state.store.begin() as conn:
        return subs.unsubscribe(conn, page_id, token)


def _invalid_link(request: Request, page: subs.Page | None, as_json: bool) -> Response:
    if as_json:
        raise HTTPException(404, "this link is not valid (any more)")
    return _error(
        request,
        _shown(page),
        404,
        "Link not valid",
        "This link is not valid (any more): the subscription may have ended.",
    )


async def unsubscribe(request: Request) -> Response:
    """GET shows what will stop and a button; POST unsubscribes (also RFC 8058 one-click
    `List-Unsubscribe=One-Click` from mail clients, and webhook receivers' POSTs)."""
    page = await run_in_threadpool(_any_page, request)
    token = request.path_params["token"]
    row = await run_in_threadpool(_by_token, request, page.id, token) if page else None
    as_json = _wants_json(request)
    if page is None or row is None:
        return _invalid_link(request, page, as_json)
    base = page_url(request, page)
    if request.method in ("GET", "HEAD"):
        return html(
            "subscribe_unsubscribe.html",
            page=page,
            page_url=base,
            address=subs.shown(row),
            **_links(request, base, row),
        )
    await run_in_threadpool(_unsubscribe, request, page.id, token)
    if as_json:
        return JSONResponse({"status": "unsubscribed", "address": subs.shown(row)})
    return html("subscribe_unsubscribed.html", page=page, page_url=base, address=subs.shown(row))


def _manage_context(request: Request, page: subs.Page, row: Any) -> dict[str, Any]:
    with request.app.state.store.read() as conn:
        components = subs.page_components(conn, page.id)
    base = page_url(request, page)
    return {
        "page": page,
        "page_url": base,
        "address": subs.shown(row),
        "channel": row.channel,
        "confirmed": bool(row.confirmed),
        "components": components,
        "chosen": list(row.services or []),
        **_links(request, base, row),
    }


def _save_services(request: Request, page: subs.Page, token: str, keys: list[str] | None) -> Any:
    with request.app.state.store.begin() as conn:
        return subs.set_services(conn, page.id, token, keys)


async def manage(request: Request) -> Response:
    """A subscriber's own page, from the link in every message (its token is the
    credential; no sign-in): which services it follows, and unsubscribing. GET shows the
    forms; POST saves the services ticked (none: every service), or with `unsubscribe`
    ends the subscription."""
    page = await run_in_threadpool(_any_page, request)
    token = request.path_params["token"]
    row = await run_in_threadpool(_manageable, request, page, token) if page else None
    if page is None or row is None:
        return _invalid_link(request, page, False)
    if request.method in ("GET", "HEAD"):
        context = await run_in_threadpool(_manage_context, request, page, row)
        return html("subscribe_manage.html", **context)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise HTTPException(415, "send the manage page's form")
    form = await request.form(max_files=0, max_fields=256)
    if form.get("unsubscribe"):
        await run_in_threadpool(_unsubscribe, request, page.id, token)
        base = page_url(request, page)
        return html(
            "subscribe_unsubscribed.html", page=page, page_url=base, address=subs.shown(row)
        )
    keys = [str(k) for k in form.getlist("services")] or None
    try:
        saved = await run_in_threadpool(_save_services, request, page, token, keys)
    except ValidationError as exc:
        context = await run_in_threadpool(_manage_context, request, page, row)
        return html("subscribe_manage.html", 422, error=str(exc), **context)
    if saved is None:  # unsubscribed in the meantime
        return _invalid_link(request, page, False)
    context = await run_in_threadpool(_manage_context, request, page, saved)
    return html("subscribe_manage.html", saved=True, **context)


routes: list[BaseRoute] = [
    Route("/p/{slug}/subscribe", subscribe_form, methods=["GET", "HEAD"]),
    Route("/p/{slug}/subscribe", subscribe, methods=["POST"]),
    Route("/p/{slug}/subscriptions/confirm/{token}", confirm, methods=["GET", "HEAD", "POST"]),
    Route("/p/{slug}/subscriptions/manage/{token}", manage, methods=["GET", "HEAD", "POST"]),
    Route(
        "/p/{slug}/subscriptions/unsubscribe/{token}",
        unsubscribe,
        methods=["GET", "HEAD", "POST"],
    ),
]
