"""What every admin web UI view shares: who is signed in, rendering, forms and their errors,
and calling the admin API's handlers.

The UI is one more caller of Beacon's one write path: a view turns its form into the admin
API's own input model and calls the same handler the JSON API calls (`pages.admin`), with
the same principal. So the UI gets the API's checks (who may act on which team, 404 for
what the caller may not see), its validation and its audit entries, and follows it as the
handlers move onto `engine/` write functions. Nothing here writes a table.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.authz import OPEN, authorize, member_filter
from engine.errors import BeaconError, ConflictError, NotFoundError
from engine.tables import teams
from pages.admin import action_for
from pages.admin.api import Ctx, Handler
from pages.admin.schemas import MAX_ID
from pages.auth import Principal, principal
from pages.authz import ui_action
from pages.errors import FieldErrors, pydantic_errors
from pages.sessions import csrf_ok, csrf_token

TEMPLATES = Path(__file__).parent.parent / "templates"
NO_STORE = {"Cache-Control": "private, no-store", "Vary": "Cookie, Authorization"}

ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M UTC") if dt else ""
ENV.filters["words"] = lambda s: str(s).replace("_", " ")


def _iso_when(value: Any) -> str:
    """An ISO time (as `engine.why` gives them) the way the rest of the UI shows times."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value)


ENV.filters["iso_when"] = _iso_when

#: The navigation for admins and responders: (path, label); ADMIN_NAV for admins only.
ADMIN_NAV = frozenset({"/admin/teams", "/admin/audit"})
NAV: list[tuple[str, str]] = [
    ("/admin/pages", "Status pages"),
    ("/admin/incidents", "Incidents"),
    ("/admin/maintenance", "Maintenance"),
    ("/admin/services", "Services"),
    ("/admin/sources", "Alert sources"),
    ("/admin/rules", "Rules"),
    ("/admin/teams", "Teams and users"),
    ("/admin/keys", "API keys"),
    ("/admin/audit", "Audit log"),
]


class Problem(Exception):
    """A form that cannot be saved as it is: `errors` as `{field, message}` to show inline."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


def problem_of(exc: Exception) -> Problem:
    """What an admin API handler (or its input model) refused, as inline form errors."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, FieldErrors):
        return Problem(exc.errors)
    if isinstance(exc, PydanticValidationError):
        return Problem(pydantic_errors(exc))
    if isinstance(exc, (ConflictError, NotFoundError)):
        return Problem([{"field": getattr(exc, "field", None) or "", "message": str(exc)}])
    if isinstance(exc, BeaconError):
        return Problem([{"field": getattr(exc, "field", None) or "", "message": str(exc)}])
    if isinstance(exc, HTTPException):
        return Problem([{"field": "", "message": str(exc.detail)}])
    raise exc


def field_errors(problem: Problem | None) -> dict[str, str]:
    """Errors by field name (the first of each; nested names keep their first part)."""
    out: dict[str, str] = {}
    for err in problem.errors if problem else []:
        out.setdefault(err["field"].split(".", 1)[0], err["message"])
    return out


def render(
    request: Request, who: Principal | None, name: str, status: int = 200, /, **context: Any
) -> Response:
    """One of the admin templates, never cached (it carries the CSRF token)."""
    flash = request.session.pop("flash", None) if "session" in request.scope else None
    context.setdefault("problem", None)
    context.setdefault("errors", field_errors(context["problem"]))
    body = ENV.get_template(f"admin/{name}").render(
        who=who,
        manager=who is not None and who.role != "stakeholder",
        nav=[n for n in NAV if who is not None and (who.admin or n[0] not in ADMIN_NAV)],
        here=request.url.path,
        csrf=csrf_token(request),
        flash=flash,
        **context,
    )
    return Response(body, status, headers=NO_STORE, media_type="text/html; charset=utf-8")


def redirect(request: Request, path: str, flash: str | None = None) -> Response:
    """303 to `path` (after a POST), with a one-time message for the next page."""
    if flash:
        request.session["flash"] = flash
    return RedirectResponse(path, 303, headers=NO_STORE)


View = Callable[[Request, Principal], Awaitable[Response]]


def view(*, manage: bool = True, admin: bool = False) -> Callable[[View], Callable[..., Any]]:
    """A route for signed-in users. Anonymous visitors are sent to sign in; with `manage`,
    stakeholders (read-only) get 404, as for anything they may not see; with `admin`,
    only admins pass. A POST must carry the form's CSRF token (the session middleware
    hides the session from one that does not, so it arrives here as anonymous; this checks
    again so that an API-key caller's form post is held to the same rule)."""

    def wrap(fn: View) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            who = await run_in_threadpool(principal, request)
            if who is None:
                if request.method not in ("GET", "HEAD"):
                    return render(request, None, "error.html", 403, message=_refused(request))
                return RedirectResponse(
                    "/login?next=" + quote(request.url.path, safe="/"), 303, headers=NO_STORE
                )
            if (manage and who.role == "stakeholder") or (admin and not who.admin):
                return not_found(request, who)
            if any("\x00" in k or "\x00" in v for k, v in request.query_params.multi_items()):
                return render(
                    request, who, "error.html", 400, message="the address holds a NUL character"
                )
            action = ui_action(request.url.path, (request.method,))
            if action is None or (action not in OPEN and not authorize(who, action).allowed):
                # engine.authz, with the action pages.authz declares for this address.
                return not_found(request, who)
            try:
                return await fn(request, who)
            except NotFoundError:
                return not_found(request, who)
            except Problem as exc:
                return render(request, who, "error.html", 422, message=str(exc))
            except HTTPException as exc:
                return render(request, who, "error.html", exc.status_code, message=exc.detail)

        return endpoint

    return wrap


def _refused(request: Request) -> str:
    from pages.sessions import REFUSED

    reason = request.scope.get(REFUSED)
    return str(reason) if reason else "Your session has ended: sign in again."


def not_found(request: Request, who: Principal | None) -> Response:
    return render(request, who, "error.html", 404, message="There is nothing here.")


async def form_of(request: Request) -> FormData:
    """The posted form, its CSRF token checked (a 403 page otherwise)."""
    form = await request.form()
    if not csrf_ok(request, form.get("csrf")):
        raise HTTPException(403, "the form's CSRF token is missing or out of date: reload")
    if any(isinstance(v, str) and "\x00" in v for _, v in form.multi_items()):
        # No text of Beacon's holds one (PostgreSQL cannot store it): refused, not dropped.
        raise HTTPException(400, "the form holds a NUL character, which no field may contain")
    return form


def text(form: FormData | Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def texts(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def model(cls: type[BaseModel], values: Mapping[str, Any]) -> Any:
    """`values` validated as the admin API's input model (a Problem when they are not)."""
    try:
        return cls.model_validate(dict(values))
    except PydanticValidationError as exc:
        raise Problem(pydantic_errors(exc)) from None


async def call(
    request: Request, who: Principal, handler: Handler, body: Any = None, **ids: int
) -> Any:
    """Run an admin API handler as `who` (in a thread: the store is synchronous). What the
    handler refuses comes back as a Problem; a NotFoundError stays one (the view's 404:
    another team's object is not there, as in the API)."""
    if any(not 1 <= value <= MAX_ID for value in ids.values()):
        raise NotFoundError("no such object")
    # The endpoint's own action: engine.authz answers the UI as it answers the API.
    action = action_for(handler)
    ctx = Ctx(request, who, request.app.state.store, body, dict(ids), action=action)
    try:
        result = await run_in_threadpool(handler, ctx)
    except NotFoundError:
        raise
    except sa.exc.IntegrityError:
        raise Problem(
            [{"field": "", "message": "the change conflicts with an existing object"}]
        ) from None
    except (FieldErrors, PydanticValidationError, ConflictError, BeaconError) as exc:
        raise problem_of(exc) from None
    except HTTPException as exc:
        if exc.status_code == 404:
            raise NotFoundError(str(exc.detail)) from None
        raise problem_of(exc) from None
    if ctx.nudge:
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.nudge.set()
    return result


def team_choices(request: Request, who: Principal) -> list[Any]:
    """The teams `who` may act for (all of them for an admin), by key: engine.authz's
    member filter, the rows a change may be made to (the forms, and the incident and
    maintenance forms' audience count, ask it through here)."""
    store = request.app.state.store
    with store.read() as conn:
        query = sa.select(teams.c.id, teams.c.key, teams.c.name, teams.c.private).order_by(
            teams.c.key
        )
        return list(conn.execute(query.where(member_filter(who, teams.c.id))))
