"""The session cookie and the cross-site request check.

`Sessions` keeps a small signed dict in the `beacon_session` cookie (itsdangerous, with
`BEACON_SECRET_KEY`): `csrf`, the token forms carry back, and, once signed in, `sid`, the
random token of a server-side session row (`engine.sessions`), which alone says who is
signed in, and `host`, the host it was signed in on, the only one where it counts. The
cookie is `HttpOnly`, `SameSite=Lax`, and `Secure` whenever the request came over HTTPS
(behind a proxy listed in `BEACON_TRUSTED_PROXIES`, as its X-Forwarded-Proto says).

`CrossSiteGuard` decides whether a state-changing request may use the session's authority.
It may when it carries the session's CSRF token (a form's `csrf` field or an `X-CSRF-Token`
header), or when it is JSON sent from Beacon's own origin (the `Origin` header, or
`Sec-Fetch-Site: same-origin` where a browser sends no Origin). Otherwise the session is
hidden from the route, which then sees an anonymous caller (`pages.auth` answers 403 where
it needed one, saying why), so a forged request can do only what anyone may. Requests with
an `Authorization` header are not affected: a browser never adds one across sites.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.security import new_token

from .hosts import request_host

COOKIE = "beacon_session"
#: The session's key for the host it was signed in on (`bind_to_host`).
HOST = "host"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Where CrossSiteGuard leaves its verdict: None when the request may use the session,
#: else why not (for the 403 the route gives).
REFUSED = "beacon.cross_site_refused"
#: A form bigger than this is not read for its token (it fails the check): sign-in, sign-out
#: and account forms are a few hundred bytes; the admin UI's page form carries a logo (up to
#: 512 KB) and a favicon (128 KB).
MAX_FORM_BYTES = 1024 * 1024
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class Sessions:
    """Pure ASGI middleware: `scope["session"]` from the signed cookie, written back (with
    the request's flags) only when a route changed it."""

    def __init__(self, app: ASGIApp, secret_key: str, max_age: int) -> None:
        self.app = app
        self.max_age = max_age
        self.signer = URLSafeTimedSerializer(secret_key, salt="beacon.session")

    def _load(self, raw: str | None) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            data = self.signer.loads(raw, max_age=self.max_age)
        except BadSignature:  # forged, from another key, or older than max_age
            return {}
        return data if isinstance(data, dict) else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = HTTPConnection(scope).cookies.get(COOKIE)
        session = self._load(raw)
        if "sid" in session and session.get(HOST) != request_host(scope):
            # A sign-in is good only on the host it was made on, as the browser keeps its
            # cookie: a custom domain's owner can point its DNS at a server of their own,
            # which then receives the cookies of those who signed in there.
            session = {}
        scope["session"] = session
        before = dict(session)
        secure = scope.get("scheme") in ("https", "wss")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and session != before:
                headers = MutableHeaders(scope=message)
                if session:
                    value = self.signer.dumps(session)
                    headers.append("Set-Cookie", self._cookie(value, self.max_age, secure))
                elif raw:
                    headers.append("Set-Cookie", self._cookie("", 0, secure))
            await send(message)

        await self.app(scope, receive, send_wrapper)

    @staticmethod
    def _cookie(value: str, max_age: int, secure: bool) -> str:
        flags = f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
        return flags + ("; Secure" if secure else "")


def bind_to_host(conn: HTTPConnection) -> None:
    """Make the signed-in session good only on this request's host (see `Sessions`)."""
    conn.session[HOST] = request_host(conn.scope)


def csrf_token(conn: HTTPConnection) -> str:
    """The session's CSRF token, created on first use."""
    token = conn.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = new_token()
        conn.session["csrf"] = token
    return token


def csrf_ok(conn: HTTPConnection, sent: Any) -> bool:
    """Whether `sent` is the session's CSRF token."""
    expected = conn.session.get("csrf")
    if not isinstance(expected, str) or not expected or not isinstance(sent, str):
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def own_origin(conn: HTTPConnection, base_url: str) -> bool:
    """Whether the request says it comes from a page of Beacon itself: its `Origin` is the
    request's own scheme and host, or `BEACON_BASE_URL`'s."""
    origin = conn.headers.get("origin")
    if origin is None:
        # Browsers that send no Origin still say where a request came from here.
        return conn.headers.get("sec-fetch-site") == "same-origin"
    origin = origin.strip().lower().rstrip("/")
    host = conn.headers.get("host", "").strip().lower()
    here = f"{conn.url.scheme}://{host}"
    base = urlsplit(base_url)
    return origin in (here, f"{base.scheme}://{base.netloc}".lower())


class CrossSiteGuard:
    """Pure ASGI middleware (inside `Sessions`): see the module docstring."""

    def __init__(self, app: ASGIApp, base_url: str) -> None:
        self.app = app
        self.base_url = base_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or not scope.get("session", {}).get("sid")
            or any(name == b"authorization" for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        reason, receive = await self._check(scope, receive)
        scope[REFUSED] = reason
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
        conn = HTTPConnection(scope)
        if csrf_ok(conn, conn.headers.get("x-csrf-token")):
            return None, receive
        kind = conn.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind == "application/json" or kind.endswith("+json"):
            if own_origin(conn, self.base_url):
                return None, receive
            return "a signed-in JSON request must come from Beacon's own pages", receive
        if kind in _FORMS:
            body, receive = await _buffer(receive, MAX_FORM_BYTES)
            if body is not None:
                form = await Request(scope, _replay(body)).form()
                # A multipart form's files are temporary files: closed here, since the
                # route parses the body again for itself.
                await form.close()
                if csrf_ok(conn, form.get("csrf")):
                    return None, receive
            return "the form's CSRF token is missing or out of date: reload the page", receive
        return "a signed-in request must carry the CSRF token (X-CSRF-Token)", receive


async def _buffer(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The whole body (None past `limit`) and a `receive` that gives the app all of it."""
    messages: list[Message] = []
    size = 0
    more = True
    while more and size <= limit:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    complete = not more and size <= limit
    body = b"".join(m.get("body", b"") for m in messages) if complete else None
    return body, _replay_messages(messages, receive)


def _replay(body: bytes) -> Receive:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _replay_messages(messages: list[Message], then: Receive) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return receive
