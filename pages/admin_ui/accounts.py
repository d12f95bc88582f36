"""Teams and users in the admin UI (admins): teams, invitations, roles, team membership,
signing a user out everywhere; API keys (a responder's for their teams, shown once); and
the audit log (admins: who or what changed what, filterable)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine import crud, sessions
from engine.tables import audit_log, teams
from pages.admin import accounts as api
from pages.admin.schemas import ApiKeyIn, TeamIn, UserIn, UserPatch
from pages.auth import Principal

from .web import Problem, call, form_of, model, redirect, render, team_choices, text, texts, view

ROLES = ["admin", "responder", "stakeholder"]
AUDIT_PAGE = 100


async def _people(request: Request, who: Principal, status: int = 200, **extra: Any) -> Response:
    teams_ = await call(request, who, api.list_teams)
    users = await call(request, who, api.list_users)
    return render(
        request, who, "people.html", status, teams=teams_, users=users, roles=ROLES, **extra
    )


@view(admin=True)
async def people(request: Request, who: Principal) -> Response:
    return await _people(request, who, invite={"role": "responder", "teams": []})


@view(admin=True)
async def create_team(request: Request, who: Principal) -> Response:
    form = await form_of(request)
    try:
        body = model(
            TeamIn,
            {
                "key": text(form, "key"),
                "name": text(form, "name"),
                "private": bool(form.get("private")),
            },
        )
        made = await call(request, who, api.create_team, body)
    except Problem as exc:
        return await _people(request, who, 422, problem=exc, invite={"role": "responder"})
    return redirect(request, "/admin/teams", f"Team {made.key} created.")


@view(admin=True)
async def invite(request: Request, who: Principal) -> Response:
    """Create the user without a password and email them an invitation link."""
    form = await form_of(request)
    values = {
        "email": text(form, "email").lower(),
        "name": text(form, "name"),
        "role": text(form, "role"),
        "teams": texts(form, "teams"),
    }
    try:
        made = await call(request, who, api.create_user, model(UserIn, values))
        await call(request, who, api.invite_user, id=made.id)
    except Problem as exc:
        return await _people(request, who, 422, problem=exc, invite=values)
    return redirect(request, "/admin/teams", f"Invitation sent to {made.email}.")


@view(admin=True)
async def show_user(request: Request, who: Principal) -> Response:
    user = await call(request, who, api.get_user, id=request.path_params["id"])
    return render(
        request, who, "user.html", user=user, teams=team_choices(request, who), roles=ROLES
    )


@view(admin=True)
async def update_user(request: Request, who: Principal) -> Response:
    user_id = request.path_params["id"]
    form = await form_of(request)
    changes = {
        "name": text(form, "name"),
        "role": text(form, "role"),
        "teams": texts(form, "teams"),
        "active": bool(form.get("active")),
    }
    try:
        await call(request, who, api.update_user, model(UserPatch, changes), id=user_id)
    except Problem as exc:
        user = await call(request, who, api.get_user, id=user_id)
        return render(
            request,
            who,
            "user.html",
            422,
            problem=exc,
            user=user,
            teams=team_choices(request, who),
            roles=ROLES,
        )
    return redirect(request, f"/admin/users/{user_id}", "Saved.")


@view(admin=True)
async def sign_out_everywhere(request: Request, who: Principal) -> Response:
    """End every session of the user (`engine.sessions.end_all`)."""
    user_id = request.path_params["id"]
    await form_of(request)
    user = await call(request, who, api.get_user, id=user_id)

    def write() -> int:
        with request.app.state.store.begin() as conn:
            ended = sessions.end_all(conn, user.id)
            crud.audit(conn, who.actor, "sign out", "user", user.email, detail={"sessions": ended})
            return ended

    ended = await run_in_threadpool(write)
    plural = "" if ended == 1 else "s"
    return redirect(request, f"/admin/users/{user_id}", f"{ended} session{plural} ended.")


# --- API keys ---------------------------------------------------------------------------------


async def _keys(request: Request, who: Principal, status: int = 200, **extra: Any) -> Response:
    keys = await call(request, who, api.list_keys)
    return render(
        request, who, "keys.html", status, keys=keys, teams=team_choices(request, who), **extra
    )


@view()
async def key_list(request: Request, who: Principal) -> Response:
    return await _keys(request, who)


@view()
async def create_key(request: Request, who: Principal) -> Response:
    """Create a key; it is shown on this answer only (the store keeps its hash)."""
    form = await form_of(request)
    values: dict[str, Any] = {"name": text(form, "name"), "team": text(form, "team") or None}
    values["admin"] = bool(form.get("admin"))
    if values["admin"]:
        values["team"] = None
    try:
        made = await call(request, who, api.create_key, model(ApiKeyIn, values))
    except Problem as exc:
        return await _keys(request, who, 422, problem=exc)
    return await _keys(request, who, 201, created=made)


@view()
async def revoke_key(request: Request, who: Principal) -> Response:
    await form_of(request)
    await call(request, who, api.revoke_key, id=request.path_params["id"])
    return redirect(request, "/admin/keys", "Key revoked: it stopped working at once.")


# --- the audit log ----------------------------------------------------------------------------


def _audit(request: Request, who: Principal, filters: dict[str, str], before: int | None) -> Any:
    query = (
        sa.select(audit_log, teams.c.key.label("team_key"))
        .outerjoin(teams, teams.c.id == audit_log.c.team_id)
        .order_by(audit_log.c.id.desc())
        .limit(AUDIT_PAGE)
    )
    if not who.admin:
        query = query.where(audit_log.c.team_id.in_(sorted(who.team_ids)))
    if filters["actor"]:
        query = query.where(audit_log.c.actor.contains(filters["actor"], autoescape=True))
    if filters["kind"]:
        query = query.where(audit_log.c.object_kind == filters["kind"])
    if filters["team"]:
        query = query.where(teams.c.key == filters["team"])
    if filters["q"]:
        query = query.where(audit_log.c.object_key.contains(filters["q"], autoescape=True))
    if before:
        query = query.where(audit_log.c.id < before)
    with request.app.state.store.read() as conn:
        rows = conn.execute(query).all()
        kinds = conn.execute(
            sa.select(audit_log.c.object_kind).distinct().order_by(audit_log.c.object_kind)
        ).scalars()
        return rows, list(kinds)


@view(admin=True)
async def audit(request: Request, who: Principal) -> Response:
    """The audit log, newest first, filtered by who, what kind, which team, which object
    (the installation's: engine.authz gives it to admins)."""
    params = request.query_params
    filters = {k: params.get(k, "").strip()[:200] for k in ("actor", "kind", "team", "q")}
    before_text = params.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    rows, kinds = await run_in_threadpool(_audit, request, who, filters, before)
    return render(
        request,
        who,
        "audit.html",
        rows=rows,
        kinds=kinds,
        filters=filters,
        teams=team_choices(request, who),
        more=rows[-1].id if len(rows) == AUDIT_PAGE else None,
    )


routes: list[BaseRoute] = [
    Route("/admin/teams", people, methods=["GET", "HEAD"]),
    Route("/admin/teams", create_team, methods=["POST"]),
    Route("/admin/users/invite", invite, methods=["POST"]),
    Route("/admin/users/{id:int}", show_user, methods=["GET", "HEAD"]),
    Route("/admin/users/{id:int}", update_user, methods=["POST"]),
    Route("/admin/users/{id:int}/sign-out", sign_out_everywhere, methods=["POST"]),
    Route("/admin/keys", key_list, methods=["GET", "HEAD"]),
    Route("/admin/keys", create_key, methods=["POST"]),
    Route("/admin/keys/{id:int}/revoke", revoke_key, methods=["POST"]),
    Route("/admin/audit", audit, methods=["GET", "HEAD"]),
]
