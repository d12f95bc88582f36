"""Sessions for private pages: `GET|POST /login`, `POST /logout`.

A sign-in starts a server-side session (`engine.sessions`) whose token the signed cookie
carries (`pages.sessions`); signing out ends it, "sign out everywhere" ends all of the
user's. Attempts are counted before the password is checked (`pages.signin_limits`), per
account and address, per account and per address; past a limit the form answers 429. The
error never says whether the email exists. A PBKDF2 hash from before argon2id is replaced
at the user's next sign-in.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engine import accounts, sessions
from engine.security import check_password, hash_password, needs_rehash, new_token
from engine.tables import users

from .auth import principal
from .sessions import bind_to_host, csrf_ok, csrf_token
from .signin_limits import SignInLimits

TEMPLATES = Path(__file__).parent / "templates"
ENV = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True
)
log = logging.getLogger(__name__)
GENERIC_ERROR = "The email or password is not right."
NO_STORE = {"Cache-Control": "private, no-store", "Vary": "Cookie, Authorization"}


# --- shared helpers (the subscription flows use them too) -----------------------------------


def html(name: str, status_code: int = 200, /, **context: Any) -> Response:
    """Render one of this area's templates, never cached (it may carry a CSRF token)."""
    body = ENV.get_template(name).render(**context)
    return Response(body, status_code, headers=NO_STORE, media_type="text/html; charset=utf-8")


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
    who = principal(request)
    if who is None or who.user_id is None:
        return None
    with request.app.state.store.read() as conn:
        email = conn.execute(sa.select(users.c.email).where(users.c.id == who.user_id)).scalar()
    return str(email) if email else None


def _form(request: Request, status: int = 200, **context: Any) -> Response:
    context.setdefault("email", "")
    context.setdefault("error", None)
    context.setdefault("user_email", None)
    context["next"] = safe_next(context.get("next"))
    settings = request.app.state.settings
    context["oidc"] = settings.oidc_name if settings.oidc_issuer else None
    return html("login.html", status, csrf=csrf_token(request), **context)


async def login_form(request: Request) -> Response:
    """The sign-in form (or, when signed in already, who you are and a sign-out button)."""
    email = await run_in_threadpool(_signed_in_email, request)
    return _form(request, next=request.query_params.get("next"), user_email=email)


def signin_limits(request: Request) -> SignInLimits:
    """The sign-in counters, on the runtime's Redis (every process shares them)."""
    state = request.app.state
    if getattr(state, "signin_limits", None) is None:
        rt = state.runtime
        state.signin_limits = SignInLimits(rt.queues.connection, rt.settings.redis_prefix)
    limits: SignInLimits = state.signin_limits
    return limits


def _check(request: Request, email: str, password: str) -> Any:
    """The user row when `password` is theirs (upgrading an old hash), else None."""
    user = _user_by_email(request, email) if email else None
    stored = user.password_hash if user is not None and user.password_hash else _dummy_hash()
    if not (check_password(password, stored) and user is not None and user.active):
        return None
    if needs_rehash(stored):
        with request.app.state.store.begin() as conn:
            accounts.store_password_hash(conn, user.id, hash_password(password), stored)
    return user


def sign_in(request: Request, user_id: int, method: str = "password") -> None:
    """Start a new server-side session for `user_id` in this request's cookie (nothing set
    before it carries over, and a session the cookie named before ends)."""
    store = request.app.state.store
    lifetimes = request.app.state.settings.session_lifetimes
    with store.begin() as conn:
        old = request.session.get("sid")
        if isinstance(old, str):
            sessions.end(conn, old)
        token = sessions.start(conn, user_id, lifetimes, method=method)
    request.session.clear()
    request.session["sid"] = token
    request.session["csrf"] = new_token()
    bind_to_host(request)


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
    limits = signin_limits(request)
    address = client_address(request)
    # Counted before the password is checked: parallel guesses cannot slip past the limit.
    try:
        refused = await run_in_threadpool(limits.take, email, address)
    except redis.RedisError:
        # Without the counters nothing would limit guessing: refuse for now, say why.
        log.warning("sign-in refused: the sign-in limits' Redis is unavailable")
        response = _form(
            request,
            503,
            email=email,
            next=next_path,
            error="Signing in is unavailable for a moment. Please try again shortly.",
        )
        response.headers["Retry-After"] = "10"
        return response
    if refused is not None:
        response = _form(
            request,
            429,
            email=email,
            next=next_path,
            error="Too many sign-in attempts. Please wait a few minutes and try again.",
        )
        response.headers["Retry-After"] = str(refused.retry_after)
        return response
    user = await run_in_threadpool(_check, request, email, password)
    if user is None:
        return _form(request, 401, email=email, next=next_path, error=GENERIC_ERROR)
    try:
        await run_in_threadpool(limits.succeeded, email, address)
    except redis.RedisError:  # best effort: the attempt stays counted
        log.warning("sign-in of a user not given back to the limits: Redis is unavailable")
    await run_in_threadpool(sign_in, request, int(user.id))
    return RedirectResponse(next_path, status_code=303, headers=NO_STORE)


def _sign_out(request: Request, everywhere: bool) -> None:
    sid = request.session.get("sid")
    with request.app.state.store.begin() as conn:
        if everywhere:
            who = principal(request)
            if who is not None and who.user_id is not None:
                sessions.end_all(conn, who.user_id)
        if isinstance(sid, str):
            sessions.end(conn, sid)


async def logout(request: Request) -> Response:
    """End the session (with `everywhere`, every session of the user). Needs the form's
    CSRF token: a foreign page cannot sign you out."""
    form = await request.form()
    if not csrf_ok(request, form.get("csrf")):
        return _form(request, 400, error="This form has expired. Please try again.")
    await run_in_threadpool(_sign_out, request, bool(form.get("everywhere")))
    request.session.clear()
    return RedirectResponse(safe_next(form.get("next"), "/login"), 303, headers=NO_STORE)


routes: list[BaseRoute] = [
    Route("/login", login_form, methods=["GET", "HEAD"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
