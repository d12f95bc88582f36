"""Teams, users and API keys. Teams and users are managed with an admin key; a team key can
list its team and manage its own team's keys.

Writes go through `engine.teams`, `engine.users` and `engine.api_keys` (validate -> call ->
serialise), which audit them; a new password or a deactivation ends the user's sessions.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import accounts, outbox
from engine import api_keys as key_writes
from engine import teams as team_writes
from engine import users as user_writes
from engine.errors import ConflictError, NotFoundError
from engine.tables import api_keys, team_members, teams, users

from .api import Ctx, Endpoint, fields_set
from .schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    TeamIn,
    TeamOut,
    TeamPatch,
    UserIn,
    UserOut,
    UserPatch,
)

# --- teams ------------------------------------------------------------------------------------


def _team(ctx: Ctx, conn: Connection) -> Any:
    row = conn.execute(sa.select(teams).where(teams.c.id == ctx.id)).first()
    if row is None:
        raise NotFoundError(f"no team {ctx.id}")
    ctx.check(conn, [row.id], f"team {ctx.id}")
    return row


def list_teams(ctx: Ctx) -> list[TeamOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(sa.select(teams).where(ctx.scope(teams.c.id)).order_by(teams.c.key))
        return [TeamOut.model_validate(r) for r in rows]


def get_team(ctx: Ctx) -> TeamOut:
    with ctx.store.read() as conn:
        return TeamOut.model_validate(_team(ctx, conn))


def create_team(ctx: Ctx) -> TeamOut:
    body: TeamIn = ctx.body
    with ctx.begin() as conn:
        fields = team_writes.TeamFields(key=body.key, name=body.name, private=body.private)
        ctx.ids["id"] = team_writes.create(conn, fields, actor=ctx.who.actor)
        return TeamOut.model_validate(_team(ctx, conn))


def update_team(ctx: Ctx) -> TeamOut:
    changes = {k: v for k, v in fields_set(ctx.body).items() if v is not None}
    with ctx.begin() as conn:
        row = _team(ctx, conn)
        team_writes.update(conn, row.id, team_writes.TeamChanges(**changes), actor=ctx.who.actor)
        return TeamOut.model_validate(_team(ctx, conn))


def delete_team(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = _team(ctx, conn)
        team_writes.delete(conn, row.id, actor=ctx.who.actor)


# --- users ------------------------------------------------------------------------------------


def _user_out(conn: Connection, user_id: int) -> UserOut:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    if row is None:
        raise NotFoundError(f"no user {user_id}")
    keys = conn.execute(
        sa.select(teams.c.key)
        .join(team_members, team_members.c.team_id == teams.c.id)
        .where(team_members.c.user_id == user_id)
        .order_by(teams.c.key)
    ).scalars()
    return UserOut(
        id=row.id,
        email=row.email,
        name=row.name,
        role=row.role,
        teams=list(keys),
        active=row.active,
        created_at=row.created_at,
    )


def _team_ids(conn: Connection, keys: list[str]) -> list[int]:
    found = dict(
        conn.execute(sa.select(teams.c.key, teams.c.id).where(teams.c.key.in_(keys))).all()
    )
    missing = [k for k in keys if k not in found]
    if missing:
        from pages.errors import FieldErrors

        raise FieldErrors([{"field": "teams", "message": f"unknown team {missing[0]!r}"}])
    return [found[k] for k in dict.fromkeys(keys)]


def list_users(ctx: Ctx) -> list[UserOut]:
    with ctx.store.read() as conn:
        ids = conn.execute(sa.select(users.c.id).order_by(users.c.email)).scalars().all()
        return [_user_out(conn, i) for i in ids]


def get_user(ctx: Ctx) -> UserOut:
    with ctx.store.read() as conn:
        return _user_out(conn, ctx.id)


def create_user(ctx: Ctx) -> UserOut:
    body: UserIn = ctx.body
    with ctx.begin() as conn:
        fields = user_writes.UserFields(
            email=body.email,
            role=body.role,
            name=body.name,
            password=body.password,
            team_ids=_team_ids(conn, body.teams),
        )
        return _user_out(conn, user_writes.create(conn, fields, actor=ctx.who.actor))


def update_user(ctx: Ctx) -> UserOut:
    changes = {k: v for k, v in fields_set(ctx.body).items() if v is not None}
    with ctx.begin() as conn:
        _user_out(conn, ctx.id)
        if "teams" in changes:
            changes["team_ids"] = _team_ids(conn, changes.pop("teams"))
        # A new password or a deactivation ends the user's sessions (engine.users.update).
        user_writes.update(conn, ctx.id, user_writes.UserChanges(**changes), actor=ctx.who.actor)
        return _user_out(conn, ctx.id)


def invite_user(ctx: Ctx) -> UserOut:
    """Email the user a link to choose a password (single use, 7 days); an earlier
    invitation link stops working."""
    from pages.account_links import ACCOUNT_EMAIL

    with ctx.begin() as conn:
        out = _user_out(conn, ctx.id)
        if not out.active:
            raise ConflictError(f"user {out.email} is deactivated: activate them first")
        outbox.emit(conn, ACCOUNT_EMAIL, {"user_id": ctx.id, "kind": accounts.INVITE})
        ctx.audit(conn, "update", "user", out.email, None, fields=["invitation"])
        return out


def delete_user(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        _user_out(conn, ctx.id)
        user_writes.delete(conn, ctx.id, actor=ctx.who.actor)


# --- API keys -------------------------------------------------------------------------------


def _key_query() -> Any:
    return sa.select(api_keys, teams.c.key.label("team_key")).outerjoin(
        teams, teams.c.id == api_keys.c.team_id
    )


def _key_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "team": row.team_key,
        "admin": row.admin,
        "prefix": row.prefix,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


def _key(ctx: Ctx, conn: Connection) -> Any:
    row = conn.execute(_key_query().where(api_keys.c.id == ctx.id)).first()
    if row is None or not (ctx.who.admin or row.team_id in ctx.who.team_ids):
        raise NotFoundError(f"no API key {ctx.id}")
    return row


def list_keys(ctx: Ctx) -> list[ApiKeyOut]:
    with ctx.store.read() as conn:
        rows = conn.execute(
            _key_query().where(ctx.scope(api_keys.c.team_id)).order_by(api_keys.c.id)
        )
        return [ApiKeyOut(**_key_out(r)) for r in rows]


def get_key(ctx: Ctx) -> ApiKeyOut:
    with ctx.store.read() as conn:
        return ApiKeyOut(**_key_out(_key(ctx, conn)))


def create_key(ctx: Ctx) -> ApiKeyCreated:
    body: ApiKeyIn = ctx.body
    from pages.errors import FieldErrors

    if body.admin and not ctx.who.admin:
        raise FieldErrors([{"field": "admin", "message": "only an admin key creates admin keys"}])
    if body.admin and body.team:
        raise FieldErrors([{"field": "team", "message": "an admin key has no team"}])
    with ctx.begin() as conn:
        team_id = None if body.admin else ctx.team_id(conn, body.team)
        made = key_writes.create(
            conn, name=body.name, team_id=team_id, admin=body.admin, actor=ctx.who.actor
        )
        ctx.ids["id"] = made.id
        return ApiKeyCreated(**_key_out(_key(ctx, conn)), key=made.key)


def revoke_key(ctx: Ctx) -> None:
    with ctx.begin() as conn:
        row = _key(ctx, conn)
        key_writes.revoke(conn, row.id, actor=ctx.who.actor)


ENDPOINTS = [
    Endpoint(
        "GET", "/api/v1/teams", list_teams, "List teams", "teams", response=TeamOut, many=True
    ),
    Endpoint(
        "POST",
        "/api/v1/teams",
        create_team,
        "Create a team",
        "teams",
        TeamIn,
        TeamOut,
        status=201,
        admin=True,
    ),
    Endpoint("GET", "/api/v1/teams/{id:int}", get_team, "Get a team", "teams", response=TeamOut),
    Endpoint(
        "PATCH",
        "/api/v1/teams/{id:int}",
        update_team,
        "Change a team",
        "teams",
        TeamPatch,
        TeamOut,
        admin=True,
    ),
    Endpoint(
        "DELETE",
        "/api/v1/teams/{id:int}",
        delete_team,
        "Delete a team and everything it owns",
        "teams",
        status=204,
        admin=True,
    ),
    Endpoint(
        "GET",
        "/api/v1/users",
        list_users,
        "List users",
        "users",
        response=UserOut,
        many=True,
        admin=True,
    ),
    Endpoint(
        "POST",
        "/api/v1/users",
        create_user,
        "Create a user",
        "users",
        UserIn,
        UserOut,
        status=201,
        admin=True,
    ),
    Endpoint(
        "GET",
        "/api/v1/users/{id:int}",
        get_user,
        "Get a user",
        "users",
        response=UserOut,
        admin=True,
    ),
    Endpoint(
        "PATCH",
        "/api/v1/users/{id:int}",
        update_user,
        "Change a user",
        "users",
        UserPatch,
        UserOut,
        admin=True,
    ),
    Endpoint(
        "POST",
        "/api/v1/users/{id:int}/invite",
        invite_user,
        "Email the user an invitation link to choose a password",
        "users",
        response=UserOut,
        status=202,
        admin=True,
    ),
    Endpoint(
        "DELETE",
        "/api/v1/users/{id:int}",
        delete_user,
        "Delete a user",
        "users",
        status=204,
        admin=True,
    ),
    Endpoint(
        "GET",
        "/api/v1/api-keys",
        list_keys,
        "List API keys",
        "api keys",
        response=ApiKeyOut,
        many=True,
    ),
    Endpoint(
        "POST",
        "/api/v1/api-keys",
        create_key,
        "Create an API key (shown once)",
        "api keys",
        ApiKeyIn,
        ApiKeyCreated,
        status=201,
    ),
    Endpoint(
        "GET",
        "/api/v1/api-keys/{id:int}",
        get_key,
        "Get an API key",
        "api keys",
        response=ApiKeyOut,
    ),
    Endpoint(
        "DELETE",
        "/api/v1/api-keys/{id:int}",
        revoke_key,
        "Revoke an API key",
        "api keys",
        status=204,
    ),
]
