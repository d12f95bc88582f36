"""Emailed account links: accepting an invitation and resetting a password.

`GET|POST /account/invite/{token}` and `/account/reset/{token}` let the link's recipient
choose a password; the token works once and expires (7 days, 1 hour: engine.accounts), and
using it ends every other session of the user and starts a new one here. `GET|POST
/account/reset` asks for a reset link: the answer is the same whether the email has an
account, and requests are limited per address and per email, so the form can neither tell
who has an account nor flood anyone's inbox. The emails themselves are sent by the workers
(outbox kind `accounts.email`), which make the token: it is never stored but hashed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engine import accounts, outbox
from engine.errors import ValidationError
from engine.tables import users

from .login import NO_STORE, client_address, html, limiter, sign_in
from .sessions import csrf_ok, csrf_token

#: Outbox kind: email a user an invitation or reset link (workers.account_mail).
ACCOUNT_EMAIL = "accounts.email"
TITLES = {accounts.INVITE: "Welcome to Beacon", accounts.RESET: "Choose a new password"}
#: Reset links asked for, per client address and per email, per hour.
RESETS_PER_ADDRESS = 10
RESETS_PER_EMAIL = 3
EXPIRED = "This link has expired or was used already."


def _peek(request: Request, token: str, kind: str) -> accounts.TokenUser | None:
    with request.app.state.store.read() as conn:
        return accounts.peek_token(conn, token, kind)


def _choose_page(
    request: Request, kind: str, found: accounts.TokenUser | None, status: int = 200, **extra: Any
) -> Response:
    return html(
        "account_password.html",
        status if found is not None else 410,
        title=TITLES[kind],
        email=found.email if found is not None else None,
        error=extra.get("error") or (None if found is not None else EXPIRED),
        csrf=csrf_token(request),
        min_length=accounts.MIN_PASSWORD,
    )


def _kind(request: Request) -> str:
    kind = str(request.path_params["kind"])
    if kind not in TITLES:
        raise HTTPException(404, f"no such account link /account/{kind}/...")
    return kind


async def choose_form(request: Request) -> Response:
    """The form to choose a password, for a link that still works."""
    kind = _kind(request)
    found = await run_in_threadpool(_peek, request, request.path_params["token"], kind)
    return _choose_page(request, kind, found)


def _use(request: Request, token: str, kind: str, password: str) -> accounts.TokenUser | None:
    with request.app.state.store.begin() as conn:
        return accounts.use_token(conn, token, kind, password)


async def choose(request: Request) -> Response:
    """Spend the link on the new password and sign its user in."""
    kind, token = _kind(request), request.path_params["token"]
    form = await request.form()
    found = await run_in_threadpool(_peek, request, token, kind)
    if found is None:
        return _choose_page(request, kind, None)
    password = str(form.get("password") or "")
    error = None
    if not csrf_ok(request, form.get("csrf")):
        error = "This form has expired. Please try again."
    elif password != str(form.get("confirm") or ""):
        error = "The two passwords are not the same."
    if error is None:
        try:
            used = await run_in_threadpool(_use, request, token, kind, password)
        except ValidationError as exc:
            error = str(exc)
        else:
            if used is None:  # spent by a request that came in between
                return _choose_page(request, kind, None)
            await run_in_threadpool(sign_in, request, used.user_id)
            return RedirectResponse("/login", status_code=303, headers=NO_STORE)
    return _choose_page(request, kind, found, 400, error=error)


async def reset_form(request: Request) -> Response:
    return html("account_reset.html", email="", sent=False, error=None, csrf=csrf_token(request))


def _ask_reset(request: Request, email: str) -> None:
    with request.app.state.store.begin() as conn:
        user_id = conn.execute(
            sa.select(users.c.id).where(users.c.email == email, users.c.active.is_(True))
        ).scalar()
        if user_id is not None:
            outbox.emit(conn, ACCOUNT_EMAIL, {"user_id": int(user_id), "kind": accounts.RESET})


async def reset_request(request: Request) -> Response:
    """Email a reset link if the address has an account; the same answer either way."""
    form = await request.form()
    email = str(form.get("email") or "").strip().lower()
    if not csrf_ok(request, form.get("csrf")):
        return html(
            "account_reset.html",
            400,
            email=email,
            sent=False,
            error="This form has expired. Please try again.",
            csrf=csrf_token(request),
        )
    if "@" not in email:
        return html(
            "account_reset.html",
            422,
            email=email,
            sent=False,
            error="Enter the email address you sign in with.",
            csrf=csrf_token(request),
        )
    by_address = limiter(request, "reset-address", RESETS_PER_ADDRESS, 3600)
    by_email = limiter(request, "reset-email", RESETS_PER_EMAIL, 3600)
    if not await run_in_threadpool(by_address.take, client_address(request)):
        response = html(
            "account_reset.html",
            429,
            email=email,
            sent=False,
            error="Too many requests from your address; try again in an hour.",
            csrf=csrf_token(request),
        )
        response.headers["Retry-After"] = "3600"
        return response
    # Over the per-email limit the answer does not change: it would tell the address has
    # an account. The owner simply gets no more than three emails an hour.
    if await run_in_threadpool(by_email.take, email):
        await run_in_threadpool(_ask_reset, request, email)
        request.app.state.runtime.nudge.set()
    return html("account_reset.html", email=email, sent=True, error=None, csrf="")


routes: list[BaseRoute] = [
    Route("/account/reset", reset_form, methods=["GET", "HEAD"]),
    Route("/account/reset", reset_request, methods=["POST"]),
    Route("/account/{kind:str}/{token:str}", choose_form, methods=["GET", "HEAD"]),
    Route("/account/{kind:str}/{token:str}", choose, methods=["POST"]),
]
