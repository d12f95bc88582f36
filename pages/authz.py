"""Every route declares its action (engine.authz.Action) and asks engine.authz.

A route declares its action either by being a `DeclaredRoute` (the admin API's endpoints
are: pages.admin.api) or through `ROUTE_ACTIONS` below, keyed by the route's path.
`declare(routes)` is how the app gets its routes: it refuses to build an app with a route
that declares nothing, and puts a gate in front of each route that asks
`authorize(principal, action)` before the route runs (a stakeholder never reaches an admin
handler; an anonymous caller gets 401). Inside, the route asks again about its object
(`ask(request, action, target)`): a page through engine.access, a team's object through
`pages.admin.api.Ctx.check`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.authz import OPEN, Action, Decision, Outcome, Target, authorize, readable_filter
from engine.db import Store
from engine.tables import teams

from .auth import Principal, principal
from .sessions import REFUSED

A = Action

#: The action of every route that is not a DeclaredRoute, by path. Page routes read a page
#: (engine.access decides which caller may, page by page).
ROUTE_ACTIONS: dict[str, Action] = {
    "/": A.PUBLIC,  # the list of active public pages
    "/healthz": A.PUBLIC,
    "/readyz": A.PUBLIC,
    "/metrics": A.PUBLIC,
    # The integration key in the URL is the credential.
    "/api/v1/events/{integration_key}": A.PUBLIC,
    "/api/v1/alert-sources/{key}/events": A.READ,
    # What the intake refused (bodies, key prefixes): for those who run the source.
    "/api/v1/alert-sources/{key}/rejected": A.MANAGE_SOURCES,
    "/api/v1/rejected-deliveries": A.READ_INSTALLATION,
    "/api/v1/alert-sources/{key}/rotate-key": A.MANAGE_SOURCES,
    "/api/v1/alert-sources/{key}/test": A.MANAGE_SOURCES,
    "/api/v1/services/{key}/why": A.READ,
    "/api/v1/openapi.json": A.READ,
    "/login": A.PUBLIC,
    "/logout": A.PUBLIC,
    "/login/oidc": A.PUBLIC,
    "/login/oidc/callback": A.PUBLIC,
    "/account/reset": A.PUBLIC,
    "/account/{kind:str}/{token:str}": A.PUBLIC,
    "/p/{slug}/subscribe": A.SUBSCRIBE,
    # The token in the link is the credential (it was sent to the subscriber only).
    "/p/{slug}/subscriptions/confirm/{token}": A.PUBLIC,
    "/p/{slug}/subscriptions/unsubscribe/{token}": A.PUBLIC,
    "/p/{slug}/subscriptions/manage/{token}": A.PUBLIC,
    # A personal feed link's token is the credential: it acts for its user, whom
    # engine.access asks about the page (pages.feeds, engine.feed_tokens).
    "/p/{slug}/feeds/{token}/history.rss": A.PUBLIC,
    "/p/{slug}/feeds/{token}/history.atom": A.PUBLIC,
    "/p/{slug}/feeds/{token}/maintenance.ics": A.PUBLIC,
    "/api/v1/tls/ask": A.PUBLIC,
    # The TXT token proves ownership of a domain: only the page's managers see it.
    "/api/v1/status-pages/{slug}/domain": A.MANAGE_PAGES,
    "/api/v1/status-pages/{slug}/domain/verify": A.MANAGE_PAGES,
    **{
        f"/p/{{slug}}{tail}": A.READ_PAGE
        for tail in (
            "",
            "/",
            "/history",
            "/page.js",
            "/incidents/{incident}",
            "/live",
            "/assets/{digest}",
            "/history.rss",
            "/history.atom",
            "/maintenance.ics",
            "/badge.svg",
            "/embed.js",
            "/api/v2/summary.json",
            "/api/v2/status.json",
            "/api/v2/components.json",
            "/api/v2/incidents.json",
            "/api/v2/incidents/unresolved.json",
            "/api/v2/scheduled-maintenances.json",
            "/api/v2/scheduled-maintenances/upcoming.json",
            "/api/v2/scheduled-maintenances/active.json",
        )
    },
}


#: The admin web UI (pages.admin_ui) by path prefix: (what its pages that show do, what its
#: forms that change do). Its routes are gated by pages.admin_ui.web.view (sign-in redirect,
#: HTML answers) rather than by `Gate`; the admin handlers they call ask engine.authz with
#: the endpoint's own action. A route under a prefix not listed here declares nothing.
UI_ACTIONS: dict[str, tuple[Action, Action]] = {
    "/admin/pages": (A.READ, A.MANAGE_PAGES),
    "/admin/incidents": (A.READ, A.POST_INCIDENT),
    "/admin/maintenance": (A.READ, A.MANAGE_MAINTENANCE),
    "/admin/services": (A.READ, A.MANAGE_SERVICES),
    "/admin/sources": (A.READ, A.MANAGE_SOURCES),
    "/admin/channels": (A.READ, A.MANAGE_CHANNELS),
    "/admin/templates": (A.READ, A.MANAGE_TEMPLATES),
    "/admin/rules": (A.MANAGE_RULES, A.MANAGE_RULES),
    "/admin/teams": (A.READ, A.MANAGE_TEAMS),
    "/admin/users": (A.MANAGE_USERS, A.MANAGE_USERS),
    "/admin/keys": (A.MANAGE_KEYS, A.MANAGE_KEYS),
    "/admin/audit": (A.READ, A.READ),  # the caller's teams' entries (admins: all)
    "/admin/account": (A.OWN_ACCOUNT, A.OWN_ACCOUNT),  # your own feed links
}
UI_EXACT: dict[str, Action] = {
    "/admin": A.PUBLIC,  # a redirect to /admin/
    "/admin/": A.READ_PAGE,  # the home: a stakeholder's links to its pages
    "/admin/static/{name}": A.PUBLIC,
}


#: Admin addresses inside a prefix above that do something else, checked first; each
#: pattern matches both the route's template path and the addresses it answers.
UI_WITHIN: list[tuple[re.Pattern[str], Action]] = [
    # People's addresses: for those who manage the page's subscribers, not every reader.
    (re.compile(r"^/admin/pages/[^/]+/subscribers(?:\.csv|/.*)?$"), A.MANAGE_SUBSCRIBERS),
]


def ui_within(path: str) -> Action | None:
    """The action of an admin address `UI_WITHIN` names, or None."""
    for pattern, action in UI_WITHIN:
        if pattern.match(path):
            return action
    return None


def ui_action(path: str, methods: Iterable[str]) -> Action | None:
    """The action the admin web UI declares for `path` (a route's template or an address it
    answers) asked with `methods`: the read action only if every method only reads.

    The one lookup: `declare` checks each route's action with it at start, and the UI's
    gate (pages.admin_ui.web.view) asks it again per request, so the two never disagree."""
    if path in UI_EXACT:
        return UI_EXACT[path]
    within = ui_within(path)
    if within is not None:
        return within
    for prefix, (read, write) in UI_ACTIONS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return read if set(methods) <= {"GET", "HEAD"} else write
    return None


def self_gated(path: str) -> bool:
    """The web UI's routes gate themselves (pages.admin_ui.web.view)."""
    return path == "/admin" or path.startswith("/admin/")


class UndeclaredRoute(RuntimeError):
    """A route that names no action: the app refuses to start with one."""


class DeclaredRoute(Route):
    """A route that names its action where it is made."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        action: Action,
        methods: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(path, endpoint, methods=list(methods) if methods else None, name=name)
        self.action = action


def action_of(route: BaseRoute) -> Action | None:
    """The action `route` declares, or None."""
    declared = getattr(route, "action", None)
    if isinstance(declared, Action):
        return declared
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    if path in ROUTE_ACTIONS:
        return ROUTE_ACTIONS[path]
    return ui_action(path, getattr(route, "methods", None) or ())


def declare(routes: Iterable[BaseRoute]) -> list[BaseRoute]:
    """`routes`, each behind a gate that asks engine.authz about its action; raises
    UndeclaredRoute for a route that declares none."""
    out = []
    for route in routes:
        action = action_of(route)
        if action is None:
            where = getattr(route, "path", repr(route))
            raise UndeclaredRoute(
                f"route {where} declares no action: make it a pages.authz.DeclaredRoute "
                "or add it to pages.authz.ROUTE_ACTIONS (the web UI: UI_ACTIONS)"
            )
        route.action = action  # type: ignore[attr-defined]
        # Route objects are module-level and shared by every app built: gate them once.
        if isinstance(route, Route) and action not in OPEN and not self_gated(route.path):
            if not isinstance(route.app, Gate):
                route.app = Gate(route.app, action)
        out.append(route)
    return out


class Gate:
    """ASGI wrapper of one route: asks `authorize(principal, action)` first."""

    def __init__(self, app: ASGIApp, action: Action) -> None:
        self.app = app
        self.action = action

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            ask(Request(scope, receive), self.action)
        await self.app(scope, receive, send)


def ask(conn: HTTPConnection, action: Action, target: Target | None = None) -> Principal | None:
    """The caller, when engine.authz lets it do `action` to `target`; else raises the
    denial as its HTTP answer."""
    who = principal(conn)
    decision = authorize(who, action, target)
    if not decision.allowed:
        raise denial(conn, decision)
    return who


def denial(conn: HTTPConnection, decision: Decision) -> HTTPException:
    """The HTTP answer for a refusal: 401 (or 403 for a signed-in browser's cross-site
    request, saying why), 403, or 404."""
    if decision.outcome == Outcome.UNAUTHENTICATED:
        refused = conn.scope.get(REFUSED)
        if refused:
            return HTTPException(403, f"cross-site request refused: {refused}")
        return HTTPException(
            401,
            "missing or invalid API key (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": 'Bearer realm="beacon"'},
        )
    return HTTPException(decision.status, decision.reason)


def require(
    conn: HTTPConnection, who: Principal | None, action: Action, target: Target, missing: str
) -> None:
    """Raise unless `who` may do `action` to `target`: a 404 saying `missing` when it may
    not know the object exists, else the denial."""
    decision = authorize(who, action, target)
    if decision.outcome == Outcome.NOT_FOUND:
        raise HTTPException(404, missing)
    if not decision.allowed:
        raise denial(conn, decision)


def readable_team_ids(store: Store, who: Principal) -> list[int] | None:
    """The teams whose objects `who` may READ (None: all, for an admin)."""
    if who.admin:
        return None
    with store.read() as conn:
        ids = conn.execute(sa.select(teams.c.id).where(readable_filter(who, teams.c.id)))
        return sorted(int(i) for i in ids.scalars())
