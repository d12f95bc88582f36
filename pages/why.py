"""`GET /api/v1/services/{key}/why`: why a service has its status (engine.why).

Needs an API key or a session of a responder or admin; a caller sees its teams' services
and those of teams that are not private (others are 404, like any object it may not see).
`?team=KEY` picks the team when the key is in several.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine.db import Store
from engine.why import explain

from .auth import require_principal
from .authz import readable_team_ids


async def service_why(request: Request) -> Response:
    """The inputs of the service's effective status and which of them decides it."""
    who = require_principal(request)
    store: Store = request.app.state.store
    key = request.path_params["key"]
    team = request.query_params.get("team")

    def read() -> dict[str, object]:
        # Its own teams' services and those of teams that are not private (engine.authz).
        team_ids = readable_team_ids(store, who)
        with store.read() as conn:
            return explain(conn, key, team=team, team_ids=team_ids)

    return JSONResponse(await run_in_threadpool(read))


routes: list[BaseRoute] = [Route("/api/v1/services/{key}/why", service_why, methods=["GET"])]
