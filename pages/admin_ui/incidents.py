"""Incidents in the admin UI: open one by hand or from a template (its placeholders filled
in a preview), see who will be notified before sending, post updates, resolve, and read
the timeline."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.activations import TemplateError
from engine.activations import render as render_template
from engine.models import IncidentStatus, ServiceStatus
from engine.sandbox import Limits
from pages.admin import catalog as catalog_api
from pages.admin import incidents as api
from pages.admin import services as services_api
from pages.admin.schemas import IncidentIn, UpdateIn
from pages.auth import Principal

from .audience import default_team, reach
from .web import Problem, call, form_of, model, redirect, render, team_choices, text, view

STATUSES = [s.value for s in IncidentStatus]
IMPACTS = [s.value for s in ServiceStatus if s != ServiceStatus.OPERATIONAL]


def _impacts_of(form: FormData) -> dict[int, str]:
    """`impact-<service id>` fields that name a status: the services affected."""
    out: dict[int, str] = {}
    for name, value in form.multi_items():
        if name.startswith("impact-") and name[7:].isdigit() and isinstance(value, str) and value:
            out[int(name[7:])] = value
    return out


def _filled(
    template: Any, services: list[Any], summary: str, limits: Limits
) -> tuple[dict[str, str], str | None]:
    """The template's title and message with their placeholders filled for a hand-made
    incident: `services` (and `service` when one), `event.summary` as typed, `rule` empty.
    Rendered in the incident templates' sandbox, as a rule would."""
    chosen = [{"key": s.key, "name": s.name} for s in services if s.key in template.services]
    context: dict[str, Any] = {
        "event": {"summary": summary, "details": "", "labels": {}, "links": [], "severity": ""},
        "services": chosen,
        "rule": {"id": "", "description": "opened by hand"},
    }
    if len(chosen) == 1:
        context["service"] = chosen[0]
    out = {}
    for name in ("title", "message"):
        try:
            out[name] = render_template(getattr(template, name), context, limits)
        except TemplateError as exc:
            return {"title": template.title, "message": template.message}, (
                f"The template's {name} could not be filled in: {exc}"
            )
    return out, None


async def _new_form(
    request: Request,
    who: Principal,
    values: dict[str, Any],
    status: int = 200,
    problem: Problem | None = None,
) -> Response:
    services = await call(request, who, services_api.list_services)
    templates = await call(request, who, catalog_api.list_templates)
    impacts: dict[int, str] = values.get("impacts", {})
    return render(
        request,
        who,
        "incident_new.html",
        status,
        problem=problem,
        values=values,
        services=services,
        templates=templates,
        teams=team_choices(request, who),
        statuses=STATUSES,
        impacts_choices=IMPACTS,
        reach=await reach(request, who, values.get("team", ""), impacts),
    )


@view()
async def incident_list(request: Request, who: Principal) -> Response:
    """Open incidents first, then the latest resolved ones."""
    found = await call(request, who, api.list_incidents)
    open_ = [i for i in found if i.status != "resolved"]
    resolved = [i for i in found if i.status == "resolved"][:50]
    return render(request, who, "incidents.html", open=open_, resolved=resolved)


@view()
async def new_incident(request: Request, who: Principal) -> Response:
    """The form; `?template=<id>` fills it from that template (a preview of its text)."""
    values: dict[str, Any] = {
        "team": default_team(request, who),
        "status": "investigating",
        "notify": True,
        "impacts": {},
        "summary": request.query_params.get("summary", "")[:500],
    }
    ref = request.query_params.get("template", "")
    problem = None
    if ref.isdigit():
        template = await call(request, who, catalog_api.get_template, id=int(ref))
        services = await call(request, who, services_api.list_services)
        team_services = [s for s in services if s.team == template.team]
        limits = request.app.state.settings.template_limits
        filled, error = _filled(template, team_services, values["summary"], limits)
        by_key = {s.key: s.id for s in team_services}
        values.update(
            team=template.team,
            template=template.id,
            title=filled["title"],
            message=filled["message"],
            status=template.status,
            impacts={by_key[k]: v for k, v in template.services.items() if k in by_key},
            preview=filled,
        )
        if error:
            problem = Problem([{"field": "template", "message": error}])
    return await _new_form(request, who, values, problem=problem)


@view()
async def create_incident(request: Request, who: Principal) -> Response:
    """Open the incident (or, with the Preview button, show who would be notified)."""
    form = await form_of(request)
    values: dict[str, Any] = {
        "team": text(form, "team"),
        "title": text(form, "title"),
        "message": text(form, "message"),
        "status": text(form, "status") or "investigating",
        "notify": bool(form.get("notify")),
        "impacts": _impacts_of(form),
        "summary": text(form, "summary"),
    }
    if form.get("preview"):
        values["preview"] = {"title": values["title"], "message": values["message"]}
        return await _new_form(request, who, values)
    try:
        body = model(
            IncidentIn,
            {
                "team": values["team"] or None,
                "title": values["title"],
                "message": values["message"],
                "status": values["status"],
                "impacts": {str(k): v for k, v in values["impacts"].items()},
                "notify": values["notify"],
            },
        )
        created = await call(request, who, api.create_incident, body)
    except Problem as exc:
        return await _new_form(request, who, values, 422, exc)
    return redirect(request, f"/admin/incidents/{created.id}", "Incident opened.")


async def _detail(
    request: Request, who: Principal, incident_id: int, status: int = 200, **extra: Any
) -> Response:
    incident = await call(request, who, api.get_incident, id=incident_id)
    updates = await call(request, who, api.list_updates, id=incident_id)
    services = await call(request, who, services_api.list_services)
    names = {s.id: s.name for s in services}
    affected = [s.service_id for s in incident.services]
    return render(
        request,
        who,
        "incident.html",
        status,
        incident=incident,
        updates=updates,
        names=names,
        statuses=STATUSES,
        reach=await reach(request, who, incident.team, affected),
        **extra,
    )


@view()
async def show_incident(request: Request, who: Principal) -> Response:
    """The incident, its timeline (newest first) and the update form."""
    return await _detail(request, who, request.path_params["id"])


@view()
async def post_update(request: Request, who: Principal) -> Response:
    """Post an update (Resolve is an update with the status `resolved`)."""
    incident_id = request.path_params["id"]
    form = await form_of(request)
    status = "resolved" if form.get("resolve") else text(form, "status") or None
    try:
        body = model(
            UpdateIn,
            {
                "status": status,
                "message": text(form, "message"),
                "notify": bool(form.get("notify")),
            },
        )
        await call(request, who, api.create_update, body, id=incident_id)
    except Problem as exc:
        return await _detail(request, who, incident_id, 422, problem=exc)
    done = "Incident resolved." if status == "resolved" else "Update posted."
    return redirect(request, f"/admin/incidents/{incident_id}", done)


routes: list[BaseRoute] = [
    Route("/admin/incidents", incident_list, methods=["GET", "HEAD"]),
    Route("/admin/incidents/new", new_incident, methods=["GET", "HEAD"]),
    Route("/admin/incidents/new", create_incident, methods=["POST"]),
    Route("/admin/incidents/{id:int}", show_incident, methods=["GET", "HEAD"]),
    Route("/admin/incidents/{id:int}/updates", post_update, methods=["POST"]),
]
