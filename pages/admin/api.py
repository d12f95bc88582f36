"""The admin API's small framework: endpoints declared once as data, from which both the
Starlette routes and the OpenAPI document are built (so the two always agree).

A handler is a plain function `handler(ctx) -> result` run in a thread (the store is
synchronous); `ctx` carries the principal, the path ids, the validated body and the store.
Results are output models (or lists of them), or None for 204.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine import authz, crud, tables
from engine.authz import Action, Outcome
from engine.db import Store
from engine.errors import ConflictError, NotFoundError
from engine.tables import teams
from pages.auth import Principal, require_principal
from pages.authz import DeclaredRoute
from pages.errors import FieldErrors, parse_json, read_body

from .schemas import MAX_ID


@dataclass
class Ctx:
    """One admin API call: who, which object, what body."""

    request: Request
    who: Principal
    store: Store
    body: Any = None
    ids: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    nudge: bool = False
    #: What the endpoint does (its declared action): what `check` and `scope` ask about.
    #: None (a caller that did not say) is held to the strictest: members and admins only.
    action: Action | None = None

    @property
    def id(self) -> int:
        return self.ids["id"]

    @property
    def base_url(self) -> str:
        return str(self.request.app.state.settings.base_url).rstrip("/")

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction; once it commits, the dispatcher is nudged (`nudge`), since
        the engine's write functions leave outbox rows (pages dirty, notifications)."""
        with self.store.begin() as conn:
            yield conn
        self.nudge = True

    def audit(
        self, conn: Connection, action: str, kind: str, key: str, team_id: int | None, **detail: Any
    ) -> None:
        crud.audit(conn, self.who.actor, action, kind, key, team_id=team_id, detail=detail)
        self.nudge = True

    def check(self, conn: Connection, team_ids: Iterable[int | None], what: str) -> None:
        """Ask engine.authz whether the caller may do the endpoint's action to an object of
        `team_ids`: 404 `no <what>` when it may not know the object exists (a private
        team's, never 403: its existence is not disclosed), 403 when it may see it but not
        do this."""
        decision = authz.authorize(self.who, self.strict_action, authz.team_target(conn, team_ids))
        if decision.outcome == Outcome.NOT_FOUND:
            raise NotFoundError(f"no {what}")
        if not decision.allowed:
            raise HTTPException(decision.status, decision.reason)

    def may(self, conn: Connection, action: Action, team_ids: Iterable[int | None]) -> bool:
        """Whether the caller may do `action` (say READ_SECRETS) to an object of `team_ids`."""
        return authz.may(self.who, action, authz.team_target(conn, team_ids))

    @property
    def strict_action(self) -> Action:
        """The action asked about: the declared one, else one only members may do."""
        return self.action or Action.READ_SECRETS

    def may_read_secrets(self, team_id: int) -> bool:
        """Whether the caller may read the secrets of `team_id`'s objects (its members and
        admins: engine.authz, READ_SECRETS; membership needs no store read)."""
        return authz.may(self.who, Action.READ_SECRETS, authz.Target(frozenset([team_id])))

    def team_id(self, conn: Connection, key: str | None, field_name: str = "team") -> int:
        """The team a new object goes to: the named one (if the caller may act for it), or
        the caller's only team."""
        if key is None:
            if not self.who.admin and len(self.who.team_ids) == 1:
                return next(iter(self.who.team_ids))
            raise FieldErrors([{"field": field_name, "message": "name the team (its key)"}])
        found = conn.execute(sa.select(teams.c.id).where(teams.c.key == key)).scalar()
        unknown = FieldErrors([{"field": field_name, "message": f"unknown team {key!r}"}])
        if found is None:
            raise unknown
        decision = authz.authorize(self.who, self.strict_action, authz.team_target(conn, [found]))
        if decision.outcome == Outcome.NOT_FOUND:
            raise unknown
        if not decision.allowed:
            raise HTTPException(decision.status, f"team {key!r}: {decision.reason}")
        return int(found)

    def scope(self, column: Any) -> Any:
        """A filter on a team id `column` keeping the rows the caller may list: for a read,
        its own teams' and those of teams that are not private; else its own teams'."""
        if self.action == Action.READ:
            return authz.readable_filter(self.who, column)
        return authz.member_filter(self.who, column)


Handler = Callable[[Ctx], Any]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # Starlette syntax, ids as {name:int}
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    many: bool = False
    status: int = 200
    #: Kept for readers of the list: an admin-only endpoint (its action says so too).
    admin: bool = False
    #: What the endpoint does, when not its tag's (TAG_ACTIONS: reads, then writes).
    declared: Action | None = None
    #: A raw (non-JSON) body of at most this many bytes, given to the handler as `bytes`.
    raw_limit: int = 0
    #: The raw body's media type, for the OpenAPI document.
    consumes: str = "application/octet-stream"
    #: What a 2xx answer is when not JSON (the handler returns a Response of it).
    produces: str = "application/json"
    #: Query parameters the handler reads: (name, description), for the OpenAPI document.
    query: tuple[tuple[str, str], ...] = ()

    @property
    def action(self) -> Action:
        """The action engine.authz is asked about for every call of this endpoint."""
        if self.declared is not None:
            return self.declared
        read, write = TAG_ACTIONS[self.tag]
        return read if self.method == "GET" else write


#: The action of each tag's endpoints: (reads, writes). A tag without an entry has no action,
#: and the app refuses to start (pages.authz.declare).
TAG_ACTIONS: dict[str, tuple[Action, Action]] = {
    "teams": (Action.READ, Action.MANAGE_TEAMS),
    "users": (Action.MANAGE_USERS, Action.MANAGE_USERS),
    "api keys": (Action.MANAGE_KEYS, Action.MANAGE_KEYS),
    "services": (Action.READ, Action.MANAGE_SERVICES),
    "groups": (Action.READ, Action.MANAGE_SERVICES),
    "channels": (Action.READ, Action.MANAGE_CHANNELS),
    "incident templates": (Action.READ, Action.MANAGE_TEMPLATES),
    "alert sources": (Action.READ, Action.MANAGE_SOURCES),
    "pages": (Action.READ, Action.MANAGE_PAGES),
    "incidents": (Action.READ, Action.POST_INCIDENT),
    "maintenance": (Action.READ, Action.MANAGE_MAINTENANCE),
    # People's addresses: even listing them is for the page's managers, never READ.
    "subscribers": (Action.MANAGE_SUBSCRIBERS, Action.MANAGE_SUBSCRIBERS),
    "feed links": (Action.OWN_ACCOUNT, Action.OWN_ACCOUNT),
}


#: The table of the object a path's `{id}` names, by the path's collection: so the caller's
#: right to it is asked (engine.authz) before the body is read, and a caller who may not
#: know the object gets its 404 whatever it sent.
OWNERS: dict[str, sa.Table] = {
    "services": tables.services,
    "channels": tables.channels,
    "incident-templates": tables.incident_templates,
    "alert-sources": tables.alert_sources,
    "incidents": tables.incidents,
    "maintenance-windows": tables.maintenance_windows,
    "api-keys": tables.api_keys,
}


def owner_team_ids(conn: Connection, path: str, object_id: int) -> list[int | None] | None:
    """The teams owning the object `path` names by `object_id` (None: no such object, or a
    collection this does not know; [] or [None]: the installation's)."""
    collection = path.removeprefix("/api/v1/").split("/", 1)[0]
    if collection == "teams":
        found = conn.execute(sa.select(teams.c.id).where(teams.c.id == object_id)).scalar()
        return None if found is None else [int(found)]
    if collection == "pages":
        page = conn.execute(
            sa.select(tables.status_pages.c.team_id).where(tables.status_pages.c.id == object_id)
        ).first()
        if page is None:
            return None
        shared = conn.execute(
            sa.select(tables.page_teams.c.team_id).where(tables.page_teams.c.page_id == object_id)
        ).scalars()
        return [page.team_id, *shared]
    table = OWNERS.get(collection)
    if table is None:
        return None
    row = conn.execute(sa.select(table.c.team_id).where(table.c.id == object_id)).first()
    return None if row is None else [row.team_id]


def _may_touch(request: Request, who: Principal, endpoint: Endpoint, object_id: int) -> None:
    """404 or 403 (engine.authz) for the object the path names, before its body is read."""
    collection = endpoint.path.removeprefix("/api/v1/").split("/", 1)[0]
    if collection not in OWNERS and collection not in ("teams", "pages"):
        return
    with request.app.state.store.read() as conn:
        owners = owner_team_ids(conn, endpoint.path, object_id)
        decision = (
            authz.authorize(who, endpoint.action, authz.team_target(conn, owners))
            if owners is not None
            else None
        )
    what = collection.rstrip("s").replace("-", " ")
    if decision is None or decision.outcome == Outcome.NOT_FOUND:
        raise NotFoundError(f"no {what} {object_id}")
    if not decision.allowed:
        raise HTTPException(decision.status, decision.reason)


def _dump(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    if isinstance(result, list):
        return [_dump(r) for r in result]
    return result


_NOT_STORED = {"Cache-Control": "private, no-store"}


def route(endpoint: Endpoint) -> DeclaredRoute:
    async def call(request: Request) -> Response:
        # The route's gate (pages.authz.declare) has asked engine.authz already.
        who = require_principal(request)
        ids: dict[str, int] = {}
        names: dict[str, str] = {}
        for name, value in request.path_params.items():
            if isinstance(value, str):
                if not value or len(value) > 200 or "\x00" in value:
                    raise NotFoundError(f"no such {name}")
                names[name] = value
            elif not 1 <= value <= MAX_ID:
                raise NotFoundError(f"no such {name}")
            else:
                ids[name] = value
        if "id" in ids:
            await run_in_threadpool(_may_touch, request, who, endpoint, ids["id"])
        body: Any = None
        if endpoint.raw_limit:
            body = await read_body(request, endpoint.raw_limit)
            if not body:
                raise FieldErrors([{"field": "body", "message": "the file's bytes are required"}])
        elif endpoint.body:
            body = await parse_json(request, endpoint.body)
        ctx = Ctx(request, who, request.app.state.store, body, ids, names, action=endpoint.action)
        try:
            result = await run_in_threadpool(endpoint.handler, ctx)
        except sa.exc.IntegrityError:
            # A unique key taken by a concurrent request between our check and our insert.
            raise ConflictError("the change conflicts with an existing object") from None
        if ctx.nudge:
            runtime = getattr(request.app.state, "runtime", None)
            if runtime is not None:
                runtime.nudge.set()
        if result is None:
            return Response(status_code=204)
        if isinstance(result, Response):  # a non-JSON answer (`Endpoint.produces`)
            return result
        # One principal's view (addresses, a secret shown once): no cache keeps it, and a
        # browser's session-authenticated call is not `Authorization` to a shared proxy.
        return JSONResponse(_dump(result), status_code=endpoint.status, headers=_NOT_STORED)

    return DeclaredRoute(
        endpoint.path,
        call,
        action=endpoint.action,
        methods=[endpoint.method],
        name=endpoint.handler.__name__,
    )


def fields_set(body: BaseModel) -> dict[str, Any]:
    """The fields a PATCH body names (explicit nulls included), with their values."""
    return {name: getattr(body, name) for name in body.model_fields_set}
