"""The admin API's small framework: endpoints declared once as data, from which both the
Starlette routes and the OpenAPI document are built (so the two always agree).

A handler is a plain function `handler(ctx) -> result` run in a thread (the store is
synchronous); `ctx` carries the principal, the path ids, the validated body and the store.
Results are output models (or lists of them), or None for 204.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from starlette.routing import Route

from engine import crud
from engine.db import Store
from engine.errors import ConflictError, NotFoundError
from engine.tables import teams
from pages.auth import Principal, require_principal
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

    def visible(self, team_id: int | None, what: str) -> None:
        """404 (never 403) for another team's object: its existence is not disclosed."""
        if team_id is None or not self.who.can_see_team(team_id):
            raise NotFoundError(f"no {what} {self.ids.get('id', '')}".rstrip())

    def team_id(self, conn: Connection, key: str | None, field_name: str = "team") -> int:
        """The team a new object goes to: the named one (if the caller may act for it), or
        the caller's only team."""
        if key is None:
            if not self.who.admin and len(self.who.team_ids) == 1:
                return next(iter(self.who.team_ids))
            raise FieldErrors([{"field": field_name, "message": "name the team (its key)"}])
        found = conn.execute(sa.select(teams.c.id).where(teams.c.key == key)).scalar()
        if found is None or not self.who.can_see_team(found):
            raise FieldErrors([{"field": field_name, "message": f"unknown team {key!r}"}])
        return int(found)

    def scope(self, column: Any) -> Any:
        """A filter keeping rows of the teams the caller may see."""
        if self.who.admin:
            return sa.true()
        return column.in_(sorted(self.who.team_ids))


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
    admin: bool = False
    #: A raw (non-JSON) body of at most this many bytes, given to the handler as `bytes`.
    raw_limit: int = 0


def _dump(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    if isinstance(result, list):
        return [_dump(r) for r in result]
    return result


def route(endpoint: Endpoint) -> Route:
    async def call(request: Request) -> Response:
        who = require_principal(request)
        if endpoint.admin and not who.admin:
            raise HTTPException(403, "this needs an admin API key (beacon apikey create --admin)")
        if endpoint.method != "GET" and who.role == "stakeholder":
            # Stakeholders read their teams' pages; they change nothing.
            raise HTTPException(403, "stakeholders have read-only access")
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
        body: Any = None
        if endpoint.raw_limit:
            body = await read_body(request, endpoint.raw_limit)
            if not body:
                raise FieldErrors([{"field": "body", "message": "the file's bytes are required"}])
        elif endpoint.body:
            body = await parse_json(request, endpoint.body)
        ctx = Ctx(request, who, request.app.state.store, body, ids, names)
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
        return JSONResponse(_dump(result), status_code=endpoint.status)

    return Route(endpoint.path, call, methods=[endpoint.method], name=endpoint.handler.__name__)


def fields_set(body: BaseModel) -> dict[str, Any]:
    """The fields a PATCH body names (explicit nulls included), with their values."""
    return {name: getattr(body, name) for name in body.model_fields_set}
