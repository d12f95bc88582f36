"""Services in the admin UI: the list with each one's status, and a service's page: set its
status by hand (with or without an incident, with an expiry), clear that, release a rule's
claim, and why it has its status (`engine.why`, readable)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine import crud, rulesets
from engine.activations.claims import release_claim
from engine.errors import NotFoundError
from engine.models import ServiceStatus
from engine.tables import teams
from engine.why import explain
from pages.admin import incidents as incidents_api
from pages.admin import services as api
from pages.admin.schemas import IncidentIn, OverrideIn
from pages.auth import Principal, visible_team_ids
from rules.errors import RulesError
from rules.validate import stored_spec

from .web import Problem, call, form_of, model, redirect, render, text, view

STATUSES = [s.value for s in ServiceStatus]


@view()
async def service_list(request: Request, who: Principal) -> Response:
    services = await call(request, who, api.list_services)
    return render(request, who, "services.html", services=services)


def _why(request: Request, who: Principal, service: Any) -> dict[str, Any]:
    store = request.app.state.store
    with store.read() as conn:
        return explain(
            conn, service.key, team=service.team, team_ids=visible_team_ids(request, who)
        )


def _condition(condition: Any) -> str:
    shown = condition.model_dump(by_alias=True, exclude_none=True)
    if list(shown) == ["eq"]:
        return str(shown["eq"])
    return ", ".join(f"{op} {value}" for op, value in shown.items())


def rules_for(request: Request, service: Any) -> list[dict[str, Any]]:
    """The rules in force that can act on `service`: those that name it, or pick their
    service from an event field (`service_from`), and hear its team's sources; each with
    the sources it matches and what it does."""
    with request.app.state.store.read() as conn:
        stored = rulesets.in_force(conn)
    if not stored.files:
        return []
    try:
        spec = stored_spec(stored.files, stored.owners)
    except RulesError:
        return []
    found = []
    for located in spec.rules:
        rule = located.rule
        names_it = bool(rule.services) and service.key in (rule.services or [])
        if not located.hears(service.team) or not (names_it or rule.service_from):
            continue
        sources = [
            f"{field} {_condition(cond)}"
            for field, cond in rule.match.items()
            if field in ("source", "source_type")
        ]
        does = [f"sets {status}" for status in rule.claims]
        if rule.incident is not None:
            does.append(f"opens incident {rule.incident.template}")
        does += [f"notifies {channel}" for channel in rule.channels]
        found.append(
            {
                "id": rule.id,
                "description": rule.description,
                "where": f"{located.file}:{located.line}",
                "how": "names it" if names_it else f"when {rule.service_from} is {service.key}",
                "sources": sources or ["any source of its teams"],
                "does": does,
            }
        )
    return found


async def _detail(
    request: Request, who: Principal, service_id: int, status: int = 200, **extra: Any
) -> Response:
    service = await call(request, who, api.get_service, id=service_id)
    why = await run_in_threadpool(_why, request, who, service)
    rules = await run_in_threadpool(rules_for, request, service)
    return render(
        request,
        who,
        "service.html",
        status,
        service=service,
        why=why,
        rules=rules,
        statuses=STATUSES,
        values=extra.pop("values", {}),
        **extra,
    )


@view()
async def show_service(request: Request, who: Principal) -> Response:
    return await _detail(request, who, request.path_params["id"])


def _until(value: str) -> datetime | str | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return value


@view()
async def set_status(request: Request, who: Principal) -> Response:
    """Pin the service at a status (until a time, if given); with `incident`, also open an
    incident that puts that status on it."""
    service_id = request.path_params["id"]
    service = await call(request, who, api.get_service, id=service_id)
    form = await form_of(request)
    values: dict[str, Any] = {
        "status": text(form, "status"),
        "until": text(form, "until"),
        "reason": text(form, "reason"),
        "incident": bool(form.get("incident")),
        "title": text(form, "title"),
        "message": text(form, "message"),
    }
    try:
        body = model(
            OverrideIn,
            {
                "status": values["status"],
                "until": _until(values["until"]),
                "reason": values["reason"] or None,
            },
        )
        incident = None
        if values["incident"]:
            if values["status"] == "operational":
                raise Problem(
                    [
                        {
                            "field": "incident",
                            "message": "an incident needs a status worse than operational",
                        }
                    ]
                )
            incident = model(
                IncidentIn,
                {
                    "team": service.team,
                    "title": values["title"],
                    "message": values["message"],
                    "impacts": {str(service.id): values["status"]},
                },
            )
        await call(request, who, api.set_override, body, id=service_id)
        if incident is not None:
            created = await call(request, who, incidents_api.create_incident, incident)
            return redirect(
                request, f"/admin/incidents/{created.id}", f"{service.name} set, incident opened."
            )
    except Problem as exc:
        return await _detail(request, who, service_id, 422, problem=exc, values=values)
    return redirect(request, f"/admin/services/{service_id}", f"{service.name} set by hand.")


@view()
async def clear_status(request: Request, who: Principal) -> Response:
    service_id = request.path_params["id"]
    await form_of(request)
    service = await call(request, who, api.clear_override, id=service_id)
    return redirect(
        request, f"/admin/services/{service_id}", f"{service.name} follows its rules again."
    )


@view()
async def release(request: Request, who: Principal) -> Response:
    """Release one rule claim on this service (`engine.activations.claims.release_claim`):
    the status stops counting it at once; the rule's activation runs on."""
    service_id = request.path_params["id"]
    claim_id = request.path_params["claim"]
    await form_of(request)
    service = await call(request, who, api.get_service, id=service_id)
    why = await run_in_threadpool(_why, request, who, service)
    if claim_id not in {c["claim"] for c in why["claims"]}:
        raise NotFoundError(f"no claim {claim_id} on this service")

    def write() -> bool:
        with request.app.state.store.begin() as conn:
            released = release_claim(conn, claim_id, by=who.actor)
            if released:
                team_id = conn.execute(
                    sa.select(teams.c.id).where(teams.c.key == service.team)
                ).scalar()
                crud.audit(
                    conn,
                    who.actor,
                    "release claim",
                    "service",
                    service.key,
                    team_id=team_id,
                    detail={"claim": claim_id},
                )
            return released

    released = await run_in_threadpool(write)
    runtime = getattr(request.app.state, "runtime", None)
    if released and runtime is not None:
        runtime.nudge.set()
    return redirect(request, f"/admin/services/{service_id}", "Claim released.")


routes: list[BaseRoute] = [
    Route("/admin/services", service_list, methods=["GET", "HEAD"]),
    Route("/admin/services/{id:int}", show_service, methods=["GET", "HEAD"]),
    Route("/admin/services/{id:int}/status", set_status, methods=["POST"]),
    Route("/admin/services/{id:int}/clear", clear_status, methods=["POST"]),
    Route("/admin/services/{id:int}/claims/{claim:int}/release", release, methods=["POST"]),
]
