"""Security headers on every answer.

HTML documents get a Content-Security-Policy that allows Beacon's own scripts and no
inline script (`script-src 'self'`), may not be framed (`frame-ancestors 'none'`: no
document of Beacon is meant to be; the embed widget, `pages/embed.py`, is a script other
sites include, which fetches JSON and builds its banner in their page), and submit forms
only to Beacon. Inline styles stay allowed: the uptime bars size themselves with `style`
attributes, and CSS cannot run script. Every answer gets `nosniff` (a browser never reads
a JSON body or an upload as HTML) and a `Referrer-Policy` that sends no address to other
sites (token links must not leak through it).

Routes that need another policy set their own `Content-Security-Policy` (uploaded assets:
`ASSET_CSP`); this middleware then leaves it alone. The fast path (`pages.fastpath`) adds
the same headers to the cached documents it answers before any middleware.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
#: Uploaded logos and favicons opened on their own: nothing loads, nothing runs.
ASSET_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
REFERRER_POLICY = "same-origin"

ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", REFERRER_POLICY.encode()),
)
HTML: tuple[tuple[bytes, bytes], ...] = (
    *ALWAYS,
    (b"content-security-policy", PAGE_CSP.encode()),
)


def for_content_type(content_type: str) -> tuple[tuple[bytes, bytes], ...]:
    """The security headers an answer of `content_type` carries."""
    return HTML if content_type.startswith("text/html") else ALWAYS


def add_missing(headers: MutableHeaders) -> None:
    """Add to an answer's `headers` those of its content type it does not carry yet."""
    for name, value in for_content_type(headers.get("content-type", "")):
        if name.decode() not in headers:
            headers.append(name.decode(), value.decode())


def secured(response: Response) -> Response:
    """`response` with the headers `SecurityHeaders` adds: for answers sent before the
    app's middleware (`pages.intake.FastIntake`, the served fast paths)."""
    add_missing(response.headers)
    return response


class SecurityHeaders:
    """Pure ASGI middleware adding the headers above where a route did not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_missing(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_wrapper)
