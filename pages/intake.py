"""The event intake: `POST /api/v1/events/{integration_key}` (and `GET` with a query string).

A delivery goes: source lookup by key (404 for unknown and disabled alike) -> body read up to
the size cap (413) -> transport decoded (JSON, text, form, multipart, query string; 415 only
for a declared type Beacon cannot read) -> the adapter's signature check over the raw bytes
(401) -> the adapter's parse (400 saying what was wrong) -> the rate limit (429, never for a
resolve) -> stored durably by the group-commit writer -> 202 with the events' ids.

`beacon serve` answers deliveries on its own host names before the app's middleware
(`FastIntake`): a tool's webhook needs no session, page host or routing, and at a few
thousand deliveries a second those layers cost as much as the delivery itself. Other hosts
go through the app and its route, which runs the same `receive`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError as PydanticValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import alert_sources
from adapters.alert_sources import (
    AdapterError,
    AlertSource,
    Delivery,
    SignatureError,
    get_adapter,
    sniff,
)
from adapters.alert_sources.errors import UnknownAdapterError
from engine import events as events_mod
from engine import rejections
from engine import sources as sources_mod
from engine.errors import ValidationError
from engine.event_writer import EventWriter, Overloaded
from engine.events import Stored, Submission
from engine.models import AlertEvent, EventStatus
from engine.runtime import Runtime
from engine.sources import Source
from engine.tables import utcnow

from . import errors, sns
from .headers import secured
from .hosts import request_host
from .state import of as pages_state

log = logging.getLogger("beacon.intake")

#: How long a key lookup is cached per process. Short: a disabled or rotated-away key stops
#: working within this time in every process (at once in the process that rotated it).
SOURCE_CACHE_SECONDS = 1.0
_SOURCE_CACHE_MAX = 10_000

#: Seconds a tool is asked to wait when the store cannot take its events.
STORE_RETRY_AFTER = 5
#: What a delivery shed by a full event writer queue is asked to wait.
OVERLOAD_RETRY_AFTER = 2

_RAW_TYPES = ("application/json", "application/octet-stream")
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


# --- source lookup ------------------------------------------------------------------------
def _runtime(request: Request) -> Runtime:
    """The app's runtime (its settings and store are the app's), found once per request:
    each `request.app.state` attribute goes through Starlette's `State.__getattr__`, after a
    failed lookup whose AttributeError is formatted, and the intake asked five times."""
    scope = request.scope
    found: Runtime | None = scope.get(_RUNTIME)
    if found is None:
        found = scope[_RUNTIME] = request.app.state.runtime
    return found


_RUNTIME = "beacon.runtime"


def _cache(request: Request) -> dict[str, tuple[Source | None, float]]:
    return pages_state(_runtime(request)).sources


def forget_sources(runtime: Runtime) -> None:
    """Drop cached key lookups (after a rotation in this process)."""
    pages_state(runtime).sources.clear()


async def lookup_source(request: Request, integration_key: str) -> Source | None:
    cache = _cache(request)
    now = time.monotonic()
    hit = cache.get(integration_key)
    if hit is not None and hit[1] > now:
        return hit[0]
    store = _runtime(request).store

    def find() -> Source | None:
        with store.read() as conn:
            return sources_mod.find_by_integration_key(conn, integration_key)

    try:
        source = await asyncio.to_thread(find)
    except (DBAPIError, sqlite3.Error) as exc:
        raise store_failed("look up an integration key", exc) from None
    if source is not None and source.stale_digest is not None:
        await asyncio.to_thread(_redigest, store, source, integration_key)
    if len(cache) >= _SOURCE_CACHE_MAX:
        cache.clear()
    cache[integration_key] = (source, now + SOURCE_CACHE_SECONDS)
    return source


def _redigest(store: Any, source: Source, integration_key: str) -> None:
    """Best effort: move a key found under a previous secret key to the current one (once
    per key after a secret-key rotation; the key works either way), logged if it fails."""
    assert source.stale_digest is not None
    try:
        with store.begin() as conn:
            sources_mod.redigest(conn, source.id, integration_key, source.stale_digest)
    except (DBAPIError, sqlite3.Error) as exc:
        log.warning("could not re-digest the key of source %s: %s", source.id, exc)


def store_failed(what: str, exc: BaseException) -> HTTPException:
    """Log that the store could not `what` and give the 503 to answer: the tool retries it,
    and nothing was acknowledged, so nothing is lost. (sqlite3's own errors too: the SQLite
    insert goes through the driver directly. The driver's message only: SQLAlchemy's would
    repeat the alerts' parameters.)"""
    log.error("could not %s: %s", what, getattr(exc, "orig", exc))
    return HTTPException(
        503,
        "the event store is unavailable; nothing was stored, retry later",
        headers={"Retry-After": str(STORE_RETRY_AFTER)},
    )


# --- reading the delivery -----------------------------------------------------------------


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def readable(kind: str) -> bool:
    """Whether Beacon can read a body declared as `kind` (empty: not declared)."""
    return (
        not kind
        or kind in _RAW_TYPES
        or kind in (_FORM, _MULTIPART)
        or kind.startswith("text/")
        or kind.endswith("+json")
    )


async def _multipart(request: Request, body: bytes) -> dict[str, str]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=20, max_fields=200)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"multipart body could not be read: {exc.message}") from None
    fields: dict[str, str] = {}
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                fields[name] = data.decode("utf-8", "replace")
            else:
                fields[name] = value
    finally:
        await form.close()
    return fields


async def read_delivery(request: Request, received_at: datetime) -> Delivery:
    """The request as a `Delivery`: raw body bytes (what signatures cover), lower-case
    headers, query fields and, for form and multipart bodies, their fields."""
    settings = _runtime(request).settings
    body = (
        b""
        if request.method in ("GET", "HEAD")
        else await errors.read_body(request, settings.max_body_bytes)
    )
    content_type = request.headers.get("content-type", "")
    kind = media_type(content_type)
    if body and not readable(kind):
        raise HTTPException(
            415,
            f"content type {kind!r} is not one Beacon reads: send JSON, text, "
            "a form (urlencoded or multipart) or a query string",
        )
    form: dict[str, str] | None = None
    if body and kind == _FORM:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif body and kind == _MULTIPART:
        form = await _multipart(request, body)
    # Straight from the ASGI scope: what Starlette's Headers and QueryParams would give,
    # without building them (this runs for every delivery).
    query_string = request.scope.get("query_string") or b""
    return Delivery(
        body=body,
        received_at=received_at,
        headers={
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]
        },
        query=(
            dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
            if query_string
            else {}
        ),
        form=form,
        content_type=content_type,
    )


# --- adapters -----------------------------------------------------------------------------


def adapter_for(source: Source) -> AlertSource:
    try:
        return get_adapter(source.type)
    except (UnknownAdapterError, ImportError):
        # The source was declared with a type this build has no adapter for.
        raise HTTPException(
            501, f"alert source {source.key!r} has type {source.type!r}, which has no adapter"
        ) from None


def verify(source: Source, adapter: AlertSource, delivery: Delivery, now: datetime) -> None:
    """The adapter's signature check, when the tool signs and the source has a secret."""
    signer = alert_sources.signed(adapter)
    if signer is None or not source.signing_secret:
        return
    try:
        signer.verify(delivery, source.signing_secret, source.settings, now)
    except SignatureError as exc:
        raise HTTPException(401, f"{source.type} signature: {exc}") from None
    except AdapterError as exc:
        raise HTTPException(400, f"{source.type} signature: {exc}") from None


def parse(source: Source, adapter: AlertSource, delivery: Delivery) -> list[AlertEvent]:
    """The adapter's events, or an HTTP error that says what was wrong with the delivery."""
    try:
        return list(adapter.parse(delivery, source.settings))
    except SignatureError as exc:
        raise HTTPException(401, f"{source.type} signature: {exc}") from None
    except AdapterError as exc:
        raise HTTPException(
            400, f"not a valid {source.type} delivery: {exc}{_looks_like(source, delivery)}"
        ) from None
    except PydanticValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise HTTPException(
            400, f"not a valid {source.type} delivery: {where}{_looks_like(source, delivery)}"
        ) from None
    except Exception:
        # An adapter bug must still answer the tool with a reason, and be seen by operators.
        log.exception("the %s adapter failed on a delivery to source %r", source.type, source.key)
        raise HTTPException(
            400, f"the {source.type} adapter could not read this delivery (details are logged)"
        ) from None


def _looks_like(source: Source, delivery: Delivery) -> str:
    return sniff.hint(delivery, source.settings, source.type)


# --- rate limit ---------------------------------------------------------------------------


async def not_yet_stored(
    request: Request, source: Source, firing: list[AlertEvent]
) -> list[AlertEvent]:
    """Those of `firing` that the log does not hold yet (the others are a tool's retry of a
    delivery it timed out on)."""
    store = _runtime(request).store

    def known() -> set[int]:
        with store.read() as conn:
            return events_mod.stored_already(conn, source.id, firing)

    try:
        seen = await asyncio.to_thread(known)
    except (DBAPIError, sqlite3.Error) as exc:
        raise store_failed(f"look up events of source {source.key!r}", exc) from None
    return [e for i, e in enumerate(firing) if i not in seen]


#: A warning that the rate limit went unchecked is logged at most this often.
UNCHECKED_WARNING_SECONDS = 60.0
_last_unchecked_warning = 0.0


async def check_rate(request: Request, source: Source, firing: int) -> int | None:
    """Seconds to wait when `firing` more events would take the source past its rate limit,
    else None (the events are then taken from its budget). A limit exists to stop floods,
    not to lose alerts: when Redis does not answer (or failed a moment ago, see
    `engine.queue.Breaker`), the events are let in unchecked."""
    if not source.rate_limit or not firing:
        return None
    try:
        limit = sources_mod.parse_rate_limit(source.rate_limit)
    except ValidationError:
        log.warning("source %r has an unreadable rate limit %r", source.key, source.rate_limit)
        return None
    runtime = _runtime(request)
    breaker = runtime.queues.breaker
    if not breaker.allow():
        _unchecked(source, "Redis failed a moment ago")
        return None
    try:
        decision = await sources_mod.atake_rate(
            runtime.queues.aconnection(),
            runtime.settings.redis_prefix,
            source.id,
            limit,
            firing,
            time.time(),
        )
    except (RedisError, OSError) as exc:
        breaker.failed()
        _unchecked(source, f"Redis unavailable ({type(exc).__name__}: {exc})")
        return None
    breaker.succeeded()
    return None if decision.allowed else decision.retry_after


def _unchecked(source: Source, why: str) -> None:
    global _last_unchecked_warning
    now = time.monotonic()
    if now - _last_unchecked_warning >= UNCHECKED_WARNING_SECONDS:
        _last_unchecked_warning = now
        log.warning("rate limit of source %r not checked: %s", source.key, why)


async def rate_limited(
    request: Request, source: Source, events: list[AlertEvent]
) -> tuple[int | None, list[AlertEvent]]:
    """(seconds to wait, the firing events refused) when the delivery takes the source past
    its rate limit, else (None, []). Resolves and tests are never counted or refused (a
    retried resolve is then a duplicate and has no second effect), nor are retries of what
    the log already holds: those are looked up only when the limit refuses, so a delivery
    within it costs no read."""
    firing = [e for e in events if e.status == EventStatus.FIRING and not e.test]
    retry_after = await check_rate(request, source, len(firing))
    if retry_after is None:
        return None, []
    fresh = await not_yet_stored(request, source, firing)
    if len(fresh) < len(firing):
        retry_after = await check_rate(request, source, len(fresh))
        if retry_after is None:
            return None, []
    warn_if_never_fits(source, len(fresh))
    return retry_after, fresh


def warn_if_never_fits(source: Source, firing: int) -> None:
    """Log a refused delivery that no wait would let through: the operator must raise the
    limit."""
    try:
        limit = sources_mod.parse_rate_limit(source.rate_limit or "")
    except ValidationError:
        return
    if firing > limit.count:
        log.warning(
            "source %r sent %d firing events in one delivery, more than its rate limit %s "
            "ever lets through at once",
            source.key,
            firing,
            source.rate_limit,
        )


# --- the route ----------------------------------------------------------------------------


def writer(request: Request) -> EventWriter:
    runtime = _runtime(request)
    state = pages_state(runtime)
    found = state.event_writer
    if found is None:
        with state.lock:
            found = state.event_writer
            if found is None:
                # SQLite has one writer at a time. On PostgreSQL one writer's batches grow
                # with the load by themselves; more help only when commits are slow and CPU
                # is spare.
                writers = runtime.settings.intake_writers if runtime.store.is_postgres else 1
                found = EventWriter(
                    runtime.store,
                    on_emit=runtime.delivery,
                    writers=writers,
                    committer=runtime.store_process,
                )
                state.event_writer = found
    return found


async def store_events(
    request: Request,
    source: Source,
    events: list[AlertEvent],
    received_at: datetime,
    size: int = 0,
) -> list[Stored]:
    """Store the events through the group committer; a 503 with `Retry-After` when its
    queue is full (`engine.event_writer`: load is shed, not queued without end)."""
    resolves = any(e.status == EventStatus.RESOLVED for e in events)
    try:
        # The writer wakes the dispatcher itself when a commit gave it work.
        # The rows are made here, while the batch before this one commits: the batch's
        # transaction, which every request in it waits for, then only writes them.
        submission = events_mod.prepared(
            Submission(source, events, received_at), sqlite=not _runtime(request).store.is_postgres
        )
        return await writer(request).submit(submission, size=size, resolves=resolves)
    except Overloaded as exc:
        log.warning("shedding a delivery of source %r: %s", source.key, exc)
        raise HTTPException(
            503,
            "Beacon is receiving more deliveries than it can store right now; nothing was "
            "stored, retry later",
            headers={"Retry-After": str(OVERLOAD_RETRY_AFTER)},
        ) from None


def accepted(events: list[AlertEvent], stored: list[Stored]) -> dict[str, Any]:
    """The 202's body: the events' ids (as strings: ids may outgrow a JavaScript number)."""
    return {
        "accepted": len(events),
        "events": [str(s.id) for s in stored],
        "duplicates": sum(1 for s in stored if s.duplicate),
    }


# What a refusal's record needs from the delivery it refuses, kept in the request's scope:
# `request.state` builds a State object and goes through Python-level attribute hooks and a
# failed lookup's formatted AttributeError, on every delivery.
_SOURCE = "beacon.intake_source"
_BYTES = "beacon.intake_bytes"


async def receive(request: Request) -> Response:
    """Accept one webhook delivery (see the module docstring for the answers); a refusal
    is recorded for the source's operator (`engine.rejections`)."""
    try:
        return await _receive(request)
    except HTTPException as exc:
        if 400 <= exc.status_code < 500 and exc.status_code != 429:
            await note_refusal(request, exc.status_code, str(exc.detail))
        raise


async def note_refusal(request: Request, status: int, reason: str) -> None:
    """Record a refused delivery; best-effort: the tool's answer never waits on a failure."""
    runtime = _runtime(request)
    source: Source | None = request.scope.get(_SOURCE)
    if not pages_state(runtime).refusals.take(source.id if source else None):
        return
    refusal = rejections.Refusal(
        at=utcnow(),
        status=status,
        reason=reason,
        method=request.method,
        content_type=request.headers.get("content-type"),
        bytes=request.scope.get(_BYTES) or int(request.headers.get("content-length", "0") or 0),
        user_agent=request.headers.get("user-agent"),
        client=request.client.host if request.client else None,
    )
    key = request.path_params["integration_key"]

    def write() -> None:
        with runtime.store.begin() as conn:
            if source is not None:
                rejections.record(conn, source.id, refusal)
                return
            found = rejections.source_for_key(conn, key)
            if found is None:
                rejections.record(conn, None, refusal, key_hint=key)
                return
            source_id, why = found
            said = replace(refusal, reason=f"{refusal.reason} ({why})" if why else refusal.reason)
            rejections.record(conn, source_id, said)

    try:
        await run_in_threadpool(write)
    except Exception as exc:  # the store is away: the answer still goes out
        log.warning("could not record a refused delivery (%d): %r", status, exc)


async def _receive(request: Request) -> Response:
    received_at = utcnow()
    source = await lookup_source(request, request.path_params["integration_key"])
    if source is None:
        raise HTTPException(404, "no enabled alert source has this integration key")
    request.scope[_SOURCE] = source
    if request.method == "HEAD":
        # HEAD is safe by definition: a link checker or a tool testing the URL learns that
        # it takes deliveries, and nothing is stored, whatever the query string says.
        return Response(status_code=204)
    delivery = await read_delivery(request, received_at)
    request.scope[_BYTES] = len(delivery.body)
    adapter = adapter_for(source)
    through_sns = alert_sources.sns(adapter)
    if through_sns is None:
        verify(source, adapter, delivery, received_at)
    elif (envelope := sns.envelope_of(delivery)) is not None:
        handled = await sns.handle(request, source, through_sns, delivery, envelope)
        if handled is not None:
            return handled
    else:
        sns.refuse_unsigned(source, through_sns)
    events = parse(source, adapter, delivery)

    retry_after: int | None = None
    refused: list[AlertEvent] = []
    if source.rate_limit:
        retry_after, refused = await rate_limited(request, source, events)
    if refused:
        refusing = {id(e) for e in refused}
        events = [e for e in events if id(e) not in refusing]
    try:
        stored = (
            await store_events(request, source, events, received_at, len(delivery.body))
            if events
            else []
        )
    except (DBAPIError, sqlite3.Error) as exc:
        raise store_failed(f"store events of source {source.key!r}", exc) from None
    request.app.state.metrics.count_accepted(source.type, len(events))
    if retry_after is not None:
        raise HTTPException(
            429,
            f"alert source {source.key!r} is over its rate limit of {source.rate_limit}: "
            f"{len(refused)} firing event(s) refused; {len(events)} accepted (resolves, tests and "
            "retries of stored events always are); "
            f"retry after {retry_after}s",
            headers={"Retry-After": str(retry_after)},
        )
    return Response(orjson.dumps(accepted(events, stored)), 202, media_type="application/json")


PREFIX = "/api/v1/events/"
METHODS = ("GET", "HEAD", "POST", "PUT")

routes = [
    Route(PREFIX + "{integration_key}", receive, methods=["GET", "POST", "PUT"]),
]


class FastIntake:
    """Pure ASGI: deliveries to Beacon's own host names answered before `app`'s middleware,
    with the answers the routed `receive` gives (it is the same function) and the same
    access log line, the key redacted. Anything else goes on to `app` unchanged.

    `app` is the Starlette app: requests here read its state (`request.app`) as routed
    ones do.
    """

    def __init__(self, app: Any, fallback: Any, own_hosts: frozenset[str]) -> None:
        self.app = app
        self.fallback = fallback
        self.own_hosts = own_hosts

    async def __call__(self, scope: Any, receive_: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(PREFIX)
            and scope["method"] in METHODS
            and request_host(scope) in self.own_hosts
        ):
            key = scope["path"][len(PREFIX) :]
            if key and "/" not in key:
                await self.answer(scope, receive_, send, key)
                return
        await self.fallback(scope, receive_, send)

    async def answer(self, scope: Any, receive_: Any, send: Any, key: str) -> None:
        started = time.perf_counter()
        scope["app"] = self.app
        scope["path_params"] = {"integration_key": key}
        request = Request(scope, receive_)
        try:
            response = await receive(request)
        except HTTPException as exc:
            response = await errors.http_exception(request, exc)
        except ClientDisconnect as exc:
            response = await errors.client_gone(request, exc)
        except Exception as exc:
            response = await errors.server_error(request, exc)
        try:
            # What pages.headers.SecurityHeaders adds to the app's own answers.
            await secured(response)(scope, receive_, send)
        finally:
            errors.log_access(scope, response.status_code, started)
