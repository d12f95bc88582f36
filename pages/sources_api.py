"""Operating an alert source: its recent events and what happened to them, key rotation and
test events. (Creating and editing sources is the admin API's.)

Sources belong to teams: a team's key sees only its team's sources, and any other source
answers 404 as if it did not exist. Source keys are unique per team only, so an admin whose
key matches sources of several teams names the team with `?team=<team key>`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import authz, rejections
from engine import events as events_mod
from engine import sources as sources_mod
from engine.authz import Action
from engine.models import AlertEvent, EventStatus, Severity
from engine.sources import Source
from engine.tables import teams, utcnow
from rules.explain import Explanation

from . import intake, unmatched
from .auth import Principal, require_principal
from .authz import readable_team_ids, require
from .errors import parse_json
from .unmatched import why_unmatched

MAX_LIMIT = 500


def _find(request: Request, who: Principal, action: Action) -> Source:
    """The source the path names among those `who` may read, when it may do `action` to it
    (engine.authz: another team's source is 403 to change, a private team's 404)."""
    key = request.path_params["key"]
    team_key = request.query_params.get("team") or None
    store = request.app.state.store
    readable = readable_team_ids(store, who)
    with store.read() as conn:
        found = sources_mod.find_by_key(conn, key, readable, team_key)
    if not found:
        raise HTTPException(404, f"no alert source {key!r} in your teams")
    if len(found) > 1:
        with request.app.state.store.read() as conn:
            names = conn.execute(
                sa.select(teams.c.key).where(teams.c.id.in_([s.team_id for s in found]))
            ).scalars()
            choices = ", ".join(sorted(names))
        raise HTTPException(
            400, f"alert source {key!r} exists in several teams ({choices}): add ?team=<team key>"
        )
    with store.read() as conn:
        target = authz.team_target(conn, [found[0].team_id])
    require(request, who, action, target, f"no alert source {key!r} in your teams")
    return found[0]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def event_json(row: Any, why: Explanation | None = None) -> dict[str, Any]:
    """An alert event as the API shows it, with what evaluation made of it (and, for a
    firing event no rule matched, `why`: see `pages.unmatched.why_unmatched`)."""
    shown = {
        "id": str(row.id),
        "dedup_key": row.dedup_key,
        "status": row.status,
        "severity": row.severity,
        "summary": row.summary,
        "labels": row.labels or {},
        "occurred_at": _iso(row.occurred_at),
        "received_at": _iso(row.received_at),
        "test": bool(row.test),
        "evaluated_at": _iso(row.evaluated_at),
        # Until the rules engine has looked at it, an event is pending.
        "outcome": row.outcome
        if row.outcome is not None
        else {"result": "pending", "matched": [], "effects": []},
    }
    if why is not None:
        shown["why"] = why.to_json()
    return shown


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"query parameter {name} must be a whole number") from None
    if not low <= value <= high:
        raise HTTPException(400, f"query parameter {name} must be between {low} and {high}")
    return value


async def list_events(request: Request) -> Response:
    """`GET /api/v1/alert-sources/{key}/events`: recent events and their outcome, newest
    first; `?limit=` (max 500), `?before=<event id>` pages back."""
    who = require_principal(request)
    source = _find(request, who, Action.READ)
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    before = _int_param(request, "before", 0, 0, 2**62) or None
    store = request.app.state.store

    def read() -> tuple[list[Any], dict[int, Explanation]]:
        with store.read() as conn:
            rows = events_mod.recent(conn, source.id, limit, before)
        rules = unmatched.for_runtime(request.app.state.runtime)
        return rows, why_unmatched(store, rules, source.key, source.type, rows)

    # In a thread: explaining may first compile the rules in force.
    rows, why = await asyncio.to_thread(read)
    return JSONResponse(
        {
            "source": {
                "key": source.key,
                "type": source.type,
                "enabled": source.enabled,
                "last_event_at": _iso(source.last_event_at),
            },
            "events": [event_json(r, why.get(r.id)) for r in rows],
            "next_before": str(rows[-1].id) if len(rows) == limit else None,
        }
    )


async def list_rejected(request: Request) -> Response:
    """`GET /api/v1/alert-sources/{key}/rejected`: the deliveries the intake refused for
    this source (wrong or disabled key, unreadable body, bad signature...), newest first,
    the last 100 (`engine.rejections`)."""
    who = require_principal(request)
    source = _find(request, who, Action.MANAGE_SOURCES)
    limit = _int_param(request, "limit", rejections.KEEP, 1, rejections.KEEP)

    def read() -> list[dict[str, Any]]:
        with request.app.state.store.read() as conn:
            return rejections.recent(conn, [source.id], limit=limit)

    return JSONResponse(
        {
            "source": {"key": source.key, "type": source.type},
            "rejected": await asyncio.to_thread(read),
        }
    )


async def list_rejected_unknown_keys(request: Request) -> Response:
    """`GET /api/v1/rejected-deliveries`: deliveries to keys that name no source (a typo, a
    deleted source), for admins: they belong to no team. Only a key's first characters are
    kept."""
    who = require_principal(request)
    if not who.admin:
        raise HTTPException(403, "only admins see deliveries to unknown keys")
    limit = _int_param(request, "limit", rejections.KEEP, 1, rejections.KEEP)

    def read() -> list[dict[str, Any]]:
        with request.app.state.store.read() as conn:
            return rejections.recent(conn, None, limit=limit)

    return JSONResponse({"rejected": await asyncio.to_thread(read)})


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace: StrictInt = Field(
        default=int(sources_mod.DEFAULT_GRACE.total_seconds()),
        ge=0,
        le=int(sources_mod.MAX_GRACE.total_seconds()),
        description="seconds the current key keeps working",
    )
    replace_previous: StrictBool = Field(
        default=False,
        description="stop the key of an earlier rotation, still in its grace period, now",
    )


async def rotate_key(request: Request) -> Response:
    """`POST /api/v1/alert-sources/{key}/rotate-key` `{"grace": seconds, "replace_previous":
    false}` (both optional): a new integration key, shown once here; the old key works until
    the grace period ends. 409 while an earlier rotation's key is still in its grace."""
    who = require_principal(request)
    source = _find(request, who, Action.MANAGE_SOURCES)
    body = await request.body()
    asked = await parse_json(request, RotateBody) if body.strip() else RotateBody()
    store = request.app.state.store

    def rotate() -> sources_mod.Rotation:
        with store.begin() as conn:
            return sources_mod.rotate_key(
                conn,
                source.id,
                timedelta(seconds=asked.grace),
                replace_previous=asked.replace_previous,
            )

    # In a thread: waiting for the write lock must not stall the event loop (and with it
    # every webhook) behind a flood of deliveries.
    rotation = await asyncio.to_thread(rotate)
    intake.forget_sources(request.app.state.runtime)
    base = request.app.state.settings.base_url
    return JSONResponse(
        {
            "integration_key": rotation.integration_key,
            "url": f"{base}/api/v1/events/{rotation.integration_key}",
            "previous_key_expires_at": _iso(rotation.previous_key_expires_at),
        }
    )


def synthetic_test_event(source: Source) -> AlertEvent:
    now = utcnow()
    return AlertEvent(
        source_type=source.type,
        dedup_key="beacon-test-event",
        status=EventStatus.FIRING,
        severity=Severity.INFO,
        summary=f"Test event for alert source {source.key}",
        labels={"beacon_test": "true"},
        occurred_at=now,
        received_at=now,
        test=True,
    )


async def send_test(request: Request) -> Response:
    """`POST /api/v1/alert-sources/{key}/test`: store a test event, shown in the events list
    and never evaluated. With a body, the body is read as a delivery of the source's tool,
    so the answer shows how Beacon normalises it (no signature needed: the caller is
    authenticated)."""
    who = require_principal(request)
    source = _find(request, who, Action.MANAGE_SOURCES)
    received_at = utcnow()
    delivery = await intake.read_delivery(request, received_at)
    if delivery.body.strip() or delivery.form:
        adapter = intake.adapter_for(source)
        parsed = intake.parse(source, adapter, delivery)
        made = [e.model_copy(update={"test": True}) for e in parsed]
    else:
        made = [synthetic_test_event(source)]
    submission = events_mod.Submission(source, made, received_at, touch=False)
    stored = await asyncio.to_thread(events_mod.store_one, request.app.state.store, submission)
    answer = intake.accepted(made, stored)
    answer["normalised"] = [
        orjson.loads(e.with_ids(id=str(s.id), source=source.key).model_dump_json(exclude={"raw"}))
        for e, s in zip(made, stored, strict=True)
    ]
    return JSONResponse(answer, 202)


routes = [
    Route("/api/v1/alert-sources/{key}/events", list_events, methods=["GET"]),
    Route("/api/v1/alert-sources/{key}/rejected", list_rejected, methods=["GET"]),
    Route("/api/v1/rejected-deliveries", list_rejected_unknown_keys, methods=["GET"]),
    Route("/api/v1/alert-sources/{key}/rotate-key", rotate_key, methods=["POST"]),
    Route("/api/v1/alert-sources/{key}/test", send_test, methods=["POST"]),
]
