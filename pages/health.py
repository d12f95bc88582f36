"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import outbox
from engine.tables import deadlines


class Metrics:
    """The app's Prometheus registry; one per app so tests never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "beacon_http_requests",
            "HTTP requests answered, by route and status class",
            ["route", "status"],
            registry=self.registry,
        )
        self.events_accepted = Counter(
            "beacon_events_accepted",
            "Alert events accepted, by source type",
            ["source_type"],
            registry=self.registry,
        )
        self._accepted_by_type: dict[str, Any] = {}
        self.outbox_pending = Gauge(
            "beacon_outbox_pending", "Outbox rows not yet done", registry=self.registry
        )
        self.deadlines_pending = Gauge(
            "beacon_deadlines_pending", "Deadlines not yet fired", registry=self.registry
        )

    def count_accepted(self, source_type: str, events: int) -> None:
        """`events` more accepted from a source of `source_type`: the counter's child is
        looked up once per type (`labels` costs more than the increment, per delivery)."""
        child = self._accepted_by_type.get(source_type)
        if child is None:
            child = self._accepted_by_type[source_type] = self.events_accepted.labels(source_type)
        child.inc(events)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


#: Readiness waits this long for the store to answer `SELECT 1`.
STORE_CHECK_SECONDS = 5.0


async def readyz(request: Request) -> Response:
    """200 when the store and the queue's Redis answer, else 503 naming the part that did
    not (`{"store": "ok", "redis": "unreachable: TimeoutError"}`). Nothing here blocks the
    event loop: the store is asked from a thread, Redis through the asyncio client, each
    with a time limit."""
    checks = {"store": await _store_check(request.app.state.store)}
    queues = request.app.state.runtime.queues
    checks["queue" if queues.embedded else "redis"] = await queues.aping()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


async def _store_check(store: Any) -> str:
    def select_one() -> None:
        with store.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(select_one), STORE_CHECK_SECONDS)
    except Exception as exc:  # readiness reports the failure instead of raising it
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def metrics(request: Request) -> Response:
    m: Metrics = request.app.state.metrics
    store = request.app.state.store

    def count() -> tuple[int, int]:
        with store.read() as conn:
            due = conn.execute(sa.select(sa.func.count()).select_from(deadlines)).scalar_one()
        return outbox.pending_count(store), int(due)

    pending, due = await asyncio.to_thread(count)
    m.outbox_pending.set(pending)
    m.deadlines_pending.set(due)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
    Route("/metrics", metrics, methods=["GET"]),
]
