"""Error answers: JSON for the APIs (a status, a message, and field details where there are
any), a small HTML page for a browser that asked for a document.

A browser asking for `/`, a mistyped page or a form with the wrong method sends
`Accept: text/html` and should read a page, not raw JSON; API clients, `curl` (`*/*`) and
anything under an API path (`/api/...`, `/p/<slug>/api/...`) keep the JSON body, whose
shape is part of the contract.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from engine.errors import ConflictError, NotFoundError, ValidationError
from engine.models import readable

from .headers import for_content_type

log = logging.getLogger("beacon.http")
access_log = logging.getLogger("beacon.access")


class FieldErrors(HTTPException):
    """422 with a list of `{field, message}`."""

    def __init__(self, errors: list[dict[str, str]], message: str = "invalid request body") -> None:
        super().__init__(422, message)
        self.errors = errors


#: The plain pages (errors, the root) share the sign-in pages' base template.
PLAIN_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
)
#: Titles of the HTML error page, in a visitor's words.
_TITLES = {
    400: "This request could not be read",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Page not found",
    405: "Not available this way",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}
_API_PATH = re.compile(r"^/(?:api/|p/[^/]+/api/)")


def wants_html(request: Request) -> bool:
    """True when the client is a browser asking for a document (its Accept names
    `text/html` before any JSON) and the path is not an API's."""
    if _API_PATH.match(request.url.path):
        return False
    accept = request.headers.get("accept", "").lower()
    html_at = accept.find("text/html")
    if html_at < 0:
        return False
    json_at = accept.find("json")
    return json_at < 0 or html_at < json_at


def error_page(status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    """The HTML error page: what happened in a visitor's words, and a way back."""
    sentence = message[:1].upper() + message[1:]
    if not sentence.endswith((".", "!", "?")):
        sentence += "."
    body = PLAIN_ENV.get_template("error.html").render(
        status=status, title=_TITLES.get(status, "Request not completed"), message=sentence
    )
    # Also answered outside the middleware that adds them (pages.hosts): set here.
    security = {name.decode(): value.decode() for name, value in for_content_type("text/html")}
    merged = {"Cache-Control": "no-store", **security, **(headers or {})}
    return HTMLResponse(body, status, headers=merged)


def error_answer(
    request: Request,
    status: int,
    message: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The error as the client wants it: an HTML page for a browser, else the JSON body."""
    if wants_html(request):
        return error_page(status, message, headers)
    return JSONResponse(error_body(status, message, errors), status, headers)


def error_body(
    status: int, message: str, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"status": status, "message": message}}
    if errors:
        body["error"]["fields"] = errors
    return body


def pydantic_errors(exc: PydanticValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": readable(err)}
        for err in exc.errors(include_url=False)
    ]


async def parse_json(request: Request, model: type[BaseModel]) -> Any:
    """The request body validated as `model`, or a 400/422 that says what is wrong."""
    raw = await request.body()
    if not raw.strip():
        raise FieldErrors([{"field": "body", "message": "a JSON body is required"}])
    try:
        return model.model_validate_json(raw)
    except PydanticValidationError as exc:
        errors = pydantic_errors(exc)
        if any(e["message"].startswith("Invalid JSON") for e in errors):
            raise HTTPException(400, "body is not valid JSON") from None
        raise FieldErrors(errors) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 once it passes `limit` bytes (checked before reading when the
    client declares its length, and while reading otherwise)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    errors = exc.errors if isinstance(exc, FieldErrors) else None
    return error_answer(request, exc.status_code, str(exc.detail), errors, headers)


async def not_found(request: Request, exc: Exception) -> Response:
    return error_answer(request, 404, str(exc) or "not found")


async def conflict(request: Request, exc: Exception) -> Response:
    return error_answer(request, 409, str(exc))


async def invalid(request: Request, exc: Exception) -> Response:
    field = getattr(exc, "field", None)
    errors = [{"field": field, "message": str(exc)}] if field else None
    return error_answer(request, 422, str(exc), errors)


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its body arrived: nothing was read, stored or answered.
    Not an error of Beacon's (a tool timing out, a load test ending), so not logged as one;
    the status (nginx's 499) only reaches the access log."""
    log.debug("client went away on %s %s", request.method, redact_path(request.url.path))
    return Response(status_code=499)


async def redis_unavailable(request: Request, exc: Exception) -> Response:
    """Redis failed under a request that cannot do without it (a sign-in's attempt
    counter): a 503 the client may retry, not a 500. Pages and the intake carry on
    without Redis and never get here."""
    log.warning(
        "Redis unavailable on %s %s: %r", request.method, redact_path(request.url.path), exc
    )
    return error_answer(
        request,
        503,
        "a service Beacon depends on (Redis) is unavailable; retry shortly",
        headers={"Retry-After": "5"},
    )


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, redact_path(request.url.path))
    return error_answer(request, 500, "internal error; it has been logged")


async def data_error(request: Request, exc: Exception) -> Response:
    """PostgreSQL's driver refuses text holding a NUL character before the query runs
    (SQLite takes it): wherever one came in (a slug, a link's token, an address, a search),
    the input was bad, so a 400, not a 500. Any other data error is Beacon's own."""
    if "NUL" in str(getattr(exc, "orig", "")):
        return error_answer(request, 400, "text may not contain a NUL character")
    return await server_error(request, exc)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DataError: data_error,
    HTTPException: http_exception,
    NotFoundError: not_found,
    ConflictError: conflict,
    ValidationError: invalid,
    ClientDisconnect: client_gone,
    RedisError: redis_unavailable,
    Exception: server_error,
}


# The segment after `events/` anywhere in a path, in any case, after any number of
# slashes: a tool template's slip (`//api/v1/events/KEY`, `/api/v1/Events/KEY`,
# `/api/v2/event/KEY`) still carries a real key, and a 404 is logged like any request.
# Integration keys after events/, the tokens of emailed account links, of personal feed
# links and of a subscriber's own links (confirm, manage, unsubscribe: the only credential).
_KEY_SEGMENT = re.compile(
    r"(/events?/+|/account/(?:invite|reset)/+|/feeds/+"
    r"|/subscriptions/+(?:confirm|manage|unsubscribe)/+)[^/]+",
    re.IGNORECASE,
)


def redact_path(path: str) -> str:
    """The path with an integration key or account token replaced: secrets never reach logs."""
    return _KEY_SEGMENT.sub(r"\1<redacted>", path)


def log_access(scope: Any, status: int, started: float) -> None:
    """The access log's line for a request (`beacon.access`, at INFO), the key redacted."""
    if access_log.isEnabledFor(logging.INFO):
        client = scope.get("client") or ("-", 0)
        access_log.info(
            '%s "%s %s" %d %.1fms',
            client[0],
            scope["method"],
            redact_path(scope["path"]),
            status,
            (time.perf_counter() - started) * 1000,
        )
