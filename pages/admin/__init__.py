"""The admin API (`/api/v1/...`): every domain object over JSON, with an OpenAPI document.

Routes and the document come from one list of `Endpoint`s (`ENDPOINTS`), so the document
matches the routes by construction.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine.authz import Action
from pages.auth import require_principal

from . import accounts, catalog, feed_links, incidents, services, statuspages, subscribers
from .api import Endpoint, Handler, route
from .openapi import document

ENDPOINTS: list[Endpoint] = [
    *accounts.ENDPOINTS,
    *services.ENDPOINTS,
    *catalog.ENDPOINTS,
    *statuspages.ENDPOINTS,
    *incidents.ENDPOINTS,
    *subscribers.ENDPOINTS,
    *feed_links.ENDPOINTS,
]


def action_for(handler: Handler) -> Action | None:
    """The action of the endpoint whose handler is `handler` (the web UI calls handlers
    and gives their Ctx this action, so engine.authz is asked what the API asks)."""
    for endpoint in ENDPOINTS:
        if endpoint.handler is handler:
            return endpoint.action
    return None


async def openapi_json(request: Request) -> Response:
    """The OpenAPI 3.1 document (needs an API key, like the rest of `/api/v1`)."""
    require_principal(request)
    state = request.app.state
    if getattr(state, "openapi", None) is None:  # built once per app: routes are fixed
        state.openapi = document(ENDPOINTS, routes=request.app.routes)
    return JSONResponse(state.openapi)


routes: list[BaseRoute] = [
    Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
    *(route(ep) for ep in ENDPOINTS),
]
