"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

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
        self.outbox_pending = Gauge(
            "beacon_outbox_pending", "Outbox rows not yet done", registry=self.registry
        )
        self.deadlines_pending = Gauge(
            "beacon_deadlines_pending", "Deadlines not yet fired", registry=self.registry
        )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    checks: dict[str, str] = {}
    try:
        with request.app.state.store.read() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:  # readiness reports the failure instead of raising it
        checks["store"] = f"unreachable: {type(exc).__name__}"
    checks["queue"] = "ok" if request.app.state.runtime.queues.ping() else "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


async def metrics(request: Request) -> Response:
    m: Metrics = request.app.state.metrics
    store = request.app.state.store
    m.outbox_pending.set(outbox.pending_count(store))
    with store.read() as conn:
        m.deadlines_pending.set(
            conn.execute(sa.select(sa.func.count()).select_from(deadlines)).scalar_one()
        )
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
    Route("/metrics", metrics, methods=["GET"]),
]
