"""Request bodies are capped before they are read, on every route.

A client that declares a body longer than the route's cap (`Content-Length`) is answered
413 before one byte of it is read; a body sent without a length (chunked) is counted as it
arrives and refused as soon as it passes the cap. So no route, and no middleware that looks
at a form (the CSRF check), ever holds more than its cap of one request in memory, however
much the client sends: uvicorn closes the connection on the rest.

Routes with a cap of their own (the subscription form, the intake's configurable one) are
listed by path; every other route has `DEFAULT_LIMIT`, which is above the largest body any
of them takes (a logo: 512 KB).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The cap of routes without one of their own: admin API JSON, forms, uploads.
DEFAULT_LIMIT = 1024 * 1024


class BodyTooLarge(HTTPException):
    """The body passed its route's cap (raised into whatever was reading it)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        said = f"body of {declared} bytes" if declared is not None else "body"
        super().__init__(413, f"{said} is over the limit of {limit} bytes")
        self.limit = limit


class BodyCap:
    """Caps every HTTP request's body: `limits` are (path pattern, bytes) tried in order,
    else `default`."""

    def __init__(
        self,
        app: ASGIApp,
        default: int = DEFAULT_LIMIT,
        limits: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.app = app
        self.default = default
        self.limits = [(re.compile(pattern), limit) for pattern, limit in limits]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.limits:
            if pattern.match(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, BodyTooLarge(limit, declared))
            return
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, watched_send)
        except BodyTooLarge as exc:
            # Read by something outside the routes' error handling (a middleware): answered
            # here, unless an answer has begun.
            if started:
                raise
            await _refuse(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _refuse(send: Send, exc: BodyTooLarge) -> None:
    body = orjson.dumps({"error": {"status": 413, "message": exc.detail}})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
