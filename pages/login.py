"""Sessions for private pages: `GET|POST /login`, `POST /logout`.

The session (Starlette's signed cookie) holds `user_id`, which `pages.auth.principal` reads,
and `csrf`, a token every form that changes the session carries back. Failed sign-ins are
counted per email and client address in Redis (the runtime's queue connection, so every
`beacon serve` process shares the count); past the limit the form answers 429 before the
password is even checked. The error never says whether the email exists.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engine.security import check_password, hash_password, new_token
from engine.tables import users

TEMPLATES = Path(__file__).parent / "templates"
ENV = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True
)
#: Failed sign-ins allowed per email and client address within the window.
LOGIN_FAILURES = 5
LOGIN_WINDOW_SECONDS = 15 * 60
GENERIC_ERROR = "The email or password is not right."
NO_STORE = {"Cache-Control": "private, no-store", "Vary": "Cookie, Authorization"}


# --- shared helpers (the subscription flows use them too) -----------------------------------


def html(name: str, status_code: int = 200, /, **context: Any) -> Response:
    """Render one of this area's templates, never cached (it may carry a CSRF token)."""
    body = ENV.get_template(name).render(**context)
    return Response(body, status_code, headers=NO_STORE, media_type="text/html; charset=utf-8")


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = new_token()
        request.session["csrf"] = token
    return str(token)


def csrf_ok(request: Request, sent: Any) -> bool:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not expected or not isinstance(sent, str):
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def safe_next(value: Any, default: str = "/") -> str:
    """`value` if it is a path on this site, else `default`: `next` must never send a user
    to another host (`//evil.example`, `/\\evil.example`, `https://...`)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


@dataclass(frozen=True)
class Limiter:
    """A fixed-window counter in Redis: `limit` hits per `window` seconds per key."""

    redis: Any
    prefix: str
    limit: int
    window: int

    def _key(self, parts: tuple[str, ...]) -> str:
        # Hashed: emails and addresses stay out of Redis key listings.
        digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
        return f"{self.prefix}beacon:limit:{digest}"

    def retry_after(self, *parts: str) -> int | None:
        """Seconds until the key may try again, or None when it is under the limit."""
        key = self._key(parts)
        count = self.redis.get(key)
        if count is None or int(count) < self.limit:
            return None
        ttl = int(self.redis.ttl(key))
        return ttl if ttl > 0 else self.window

    def hit(self, *parts: str) -> int:
        """Count one hit; returns the count within the current window."""
        key = self._key(parts)
        count = int(self.redis.incr(key))
        if count == 1:
            self.redis.expire(key, self.window)
        return count

    def take(self, *parts: str) -> bool:
        """Count a hit and say whether it was within the limit."""
        return self.hit(*parts) <= self.limit

    def reset(self, *parts: str) -> None:
        self.redis.delete(self._key(parts))


def limiter(request: Request, name: str, limit: int, window: int) -> Limiter:
    rt = request.app.state.runtime
    return Limiter(rt.queues.connection, f"{rt.settings.redis_prefix}{name}:", limit, window)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


# --- routes ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Checking a password against this when the email is unknown keeps the answer's timing
    # from telling which emails have accounts.
    return hash_password(new_token())


def _user_by_email(request: Request, email: str) -> Any:
    with request.app.state.store.read() as conn:
        return conn.execute(
            sa.select(users.c.id, users.c.email, users.c.password_hash, users.c.active).where(
                users.c.email == email
            )
        ).first()


def _signed_in_email(request: Request) -> str | None:
    user_id = request.session.get("user_id")
    if not user_id:
        return None
    with request.app.state.store.read() as conn:
        row = conn.execute(
            sa.select(users.c.email, users.c.active).where(users.c.id == int(user_id))
        ).first()
    return row.email if row is not None and row.active else None


def _form(request: Request, status: int = 200, **context: Any) -> Response:
    context.setdefault("email", "")
    context.setdefault("error", None)
    context.setdefault("user_email", None)
    context["next"] = safe_next(context.get("next"))
    return html("login.html", status, csrf=csrf_token(request), **context)


async def login_form(request: Request) -> Response:
    """The sign-in form (or, when signed in already, who you are and a sign-out button)."""
    email = await run_in_threadpool(_signed_in_email, request)
    return _form(request, next=request.query_params.get("next"), user_email=email)


async def login(request: Request) -> Response:
    """Check the form; on success start a fresh session and go to `next`."""
    form = await request.form()
    email = str(form.get("email") or "").strip().lower()
    password = str(form.get("password") or "")
    next_path = safe_next(form.get("next"))
    if not csrf_ok(request, form.get("csrf")):
        return _form(
            request,
            400,
            email=email,
            next=next_path,
            error="This form has expired. Please sign in again.",
        )
    failures = limiter(request, "login", LOGIN_FAILURES, LOGIN_WINDOW_SECONDS)
    who = (email, client_address(request))
    wait = await run_in_threadpool(failures.retry_after, *who)
    if wait is not None:
        response = _form(
            request,
            429,
            email=email,
            next=next_path,
            error="Too many failed attempts. Please wait a few minutes and try again.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = await run_in_threadpool(_user_by_email, request, email) if email else None
    stored = user.password_hash if user is not None else _dummy_hash()
    valid = await run_in_threadpool(check_password, password, stored)
    if not (valid and user is not None and user.active and password):
        await run_in_threadpool(failures.hit, *who)
        return _form(request, 401, email=email, next=next_path, error=GENERIC_ERROR)
    await run_in_threadpool(failures.reset, *who)
    # A new session on sign-in: nothing set before it (by anyone) carries over.
    request.session.clear()
    request.session["user_id"] = int(user.id)
    request.session["csrf"] = new_token()
    return RedirectResponse(next_path, status_code=303, headers=NO_STORE)


async def logout(request: Request) -> Response:
    """End the session. Needs the form's CSRF token: a foreign page cannot sign you out."""
    form = await request.form()
    if not csrf_ok(request, form.get("csrf")):
        return _form(request, 400, error="This form has expired. Please try again.")
    request.session.clear()
    return RedirectResponse(safe_next(form.get("next"), "/login"), 303, headers=NO_STORE)


routes: list[BaseRoute] = [
    Route("/login", login_form, methods=["GET", "HEAD"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
