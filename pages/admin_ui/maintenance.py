"""Maintenance windows in the admin UI: schedule, edit, cancel. Times are entered in UTC
(the form says so); the window moves through scheduled, in progress and completed by itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pages.admin import incidents as api
from pages.admin import services as services_api
from pages.admin.schemas import MaintenanceIn, MaintenancePatch
from pages.auth import Principal

from .audience import default_team, reach
from .web import Problem, call, form_of, model, redirect, render, team_choices, text, texts, view


def _when(value: str, field: str) -> datetime | str:
    """A `datetime-local` value read as UTC (left as typed when it is not one: the model
    then says what is wrong with it)."""
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else value
    except ValueError:
        return value


def _values(form: FormData) -> dict[str, Any]:
    return {
        "team": text(form, "team"),
        "title": text(form, "title"),
        "message": text(form, "message"),
        "starts_at": text(form, "starts_at"),
        "ends_at": text(form, "ends_at"),
        "services": [int(v) for v in texts(form, "services") if v.isdigit()],
        "notify": bool(form.get("notify")),
        "on_end": text(form, "on_end") or "replay",
    }


def _body(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": values["title"],
        "message": values["message"],
        "starts_at": _when(values["starts_at"], "starts_at"),
        "ends_at": _when(values["ends_at"], "ends_at"),
        "services": values["services"],
        "notify": values["notify"],
        "on_end": values["on_end"],
    }


def _local(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


async def _form(
    request: Request,
    who: Principal,
    values: dict[str, Any],
    window: Any = None,
    status: int = 200,
    problem: Problem | None = None,
) -> Response:
    services = await call(request, who, services_api.list_services)
    chosen = values.get("services")
    return render(
        request,
        who,
        "maintenance_form.html",
        status,
        problem=problem,
        values=values,
        window=window,
        services=services,
        teams=team_choices(request, who),
        reach=await reach(request, who, values.get("team", ""), chosen) if chosen else None,
    )


@view()
async def window_list(request: Request, who: Principal) -> Response:
    """Scheduled and running windows first, then the completed ones."""
    windows = await call(request, who, api.list_windows)
    current = sorted((w for w in windows if w.status != "completed"), key=lambda w: w.starts_at)
    done = [w for w in windows if w.status == "completed"][:50]
    return render(request, who, "maintenance.html", current=current, done=done)


@view()
async def new_window(request: Request, who: Principal) -> Response:
    values: dict[str, Any] = {
        "team": default_team(request, who),
        "services": [],
        "notify": True,
    }
    return await _form(request, who, {**values, "on_end": "replay"})


@view()
async def create_window(request: Request, who: Principal) -> Response:
    form = await form_of(request)
    values = _values(form)
    try:
        body = model(MaintenanceIn, {**_body(values), "team": values["team"] or None})
        created = await call(request, who, api.create_window, body)
    except Problem as exc:
        return await _form(request, who, values, None, 422, exc)
    return redirect(request, f"/admin/maintenance/{created.id}", "Maintenance scheduled.")


@view()
async def show_window(request: Request, who: Principal) -> Response:
    window = await call(request, who, api.get_window, id=request.path_params["id"])
    values = {
        "team": window.team,
        "title": window.title,
        "message": window.message,
        "starts_at": _local(window.starts_at),
        "ends_at": _local(window.ends_at),
        "services": window.services,
        "notify": window.notify,
        "on_end": window.on_end,
    }
    return await _form(request, who, values, window)


@view()
async def update_window(request: Request, who: Principal) -> Response:
    window_id = request.path_params["id"]
    window = await call(request, who, api.get_window, id=window_id)
    form = await form_of(request)
    values = {**_values(form), "team": window.team}
    try:
        body = model(MaintenancePatch, _body(values))
        await call(request, who, api.update_window, body, id=window_id)
    except Problem as exc:
        return await _form(request, who, values, window, 422, exc)
    return redirect(request, f"/admin/maintenance/{window_id}", "Saved.")


@view()
async def cancel_window(request: Request, who: Principal) -> Response:
    window_id = request.path_params["id"]
    await form_of(request)
    window = await call(request, who, api.get_window, id=window_id)
    await call(request, who, api.delete_window, id=window_id)
    return redirect(request, "/admin/maintenance", f"Maintenance {window.title} cancelled.")


routes: list[BaseRoute] = [
    Route("/admin/maintenance", window_list, methods=["GET", "HEAD"]),
    Route("/admin/maintenance/new", new_window, methods=["GET", "HEAD"]),
    Route("/admin/maintenance/new", create_window, methods=["POST"]),
    Route("/admin/maintenance/{id:int}", show_window, methods=["GET", "HEAD"]),
    Route("/admin/maintenance/{id:int}", update_window, methods=["POST"]),
    Route("/admin/maintenance/{id:int}/cancel", cancel_window, methods=["POST"]),
]
