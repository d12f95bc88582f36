"""Who may do what: the one authorization function every route and the web UI ask.

`authorize(principal, action, target)` answers DESIGN.md's table (docs/security.md):

- admin (user or admin key): everything, all teams, users and keys;
- responder (user, or a team's API key): manage the objects of their teams; read the
  objects (never the secrets) of teams that are not private;
- stakeholder: read the pages of their teams and subscribe to them as themselves;
  nothing of the admin API.

A private team is invisible to everyone but its members and admins: what they may not see
answers NOT_FOUND (404), never FORBIDDEN (403), so its existence is not disclosed. A
caller who may see an object but not do the action to it gets FORBIDDEN.

Without a target, `authorize` answers whether the principal may do the action to anything
at all: the check a route makes before it loads its object (a stakeholder asking the admin
API is refused there). With a target it answers for that object.

`engine` imports no other package, so a principal is anything with `admin`, `role` and
`team_ids` (pages.auth.Principal is one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .tables import teams


class Role(StrEnum):
    ADMIN = "admin"
    RESPONDER = "responder"
    STAKEHOLDER = "stakeholder"


class Action(StrEnum):
    """Everything a route may ask to do. Each route of the app declares one
    (pages.authz.ROUTE_ACTIONS, or the admin API's endpoint list)."""

    #: Anyone, signed in or not: health, sign-in and account-link flows, tls/ask, the event
    #: intake (its integration key is the credential), subscription links (their token is).
    PUBLIC = "public"
    #: A status page and what is made of it: HTML, v2 JSON, feeds, badge, live updates.
    READ_PAGE = "read page"
    #: Subscribe to a page (anyone on a public page; its teams' members on a private one).
    SUBSCRIBE = "subscribe"
    #: Read a team's objects through the admin API (never their secrets).
    READ = "read"
    #: Read what is secret about an object: integration keys, signing secrets, channel URLs.
    READ_SECRETS = "read secrets"
    MANAGE_SERVICES = "manage services"
    POST_INCIDENT = "post incident"
    MANAGE_MAINTENANCE = "manage maintenance"
    MANAGE_TEMPLATES = "manage templates"
    MANAGE_SOURCES = "manage sources"
    MANAGE_CHANNELS = "manage channels"
    MANAGE_RULES = "manage rules"
    MANAGE_PAGES = "manage pages"
    MANAGE_SUBSCRIBERS = "manage subscribers"
    #: A team's API keys (only admins make admin keys: the handler checks that).
    MANAGE_KEYS = "manage keys"
    MANAGE_TEAMS = "manage teams"
    MANAGE_USERS = "manage users"
    #: What belongs to no team: the audit log, deliveries to keys that name no source.
    READ_INSTALLATION = "read installation"
    #: A signed-in caller's own things (personal feed links): any role; the handler keeps
    #: to the caller's own rows, so another user's answer 404.
    OWN_ACCOUNT = "own account"


#: Actions that need no principal; the target (a page) decides the rest.
OPEN = frozenset({Action.PUBLIC, Action.READ_PAGE, Action.SUBSCRIBE})
#: What a stakeholder may do (to the pages of their teams).
STAKEHOLDER_MAY = frozenset({Action.READ_PAGE, Action.SUBSCRIBE})
#: What only admins may do.
ADMIN_ONLY = frozenset({Action.MANAGE_TEAMS, Action.MANAGE_USERS, Action.READ_INSTALLATION})
#: What a responder may do to their own teams' objects (READ also to non-private teams').
RESPONDER_MAY = frozenset(Action) - ADMIN_ONLY


class Principal(Protocol):
    """The caller as authorization sees it."""

    @property
    def admin(self) -> bool: ...

    @property
    def role(self) -> str: ...

    @property
    def team_ids(self) -> frozenset[int]: ...


class Outcome(StrEnum):
    ALLOW = "allow"
    UNAUTHENTICATED = "unauthenticated"  # 401 (or the sign-in page, for HTML)
    FORBIDDEN = "forbidden"  # 403: the caller sees the object but may not do this
    NOT_FOUND = "not_found"  # 404: the caller may not know the object exists


STATUS = {
    Outcome.ALLOW: 200,
    Outcome.UNAUTHENTICATED: 401,
    Outcome.FORBIDDEN: 403,
    Outcome.NOT_FOUND: 404,
}


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.outcome == Outcome.ALLOW

    @property
    def status(self) -> int:
        return STATUS[self.outcome]


ALLOW = Decision(Outcome.ALLOW)


@dataclass(frozen=True)
class Target:
    """What an action is done to: the teams that own (or, for a page, manage) it, which of
    them are private, and for a status page whether anyone may read it."""

    team_ids: frozenset[int]
    private_team_ids: frozenset[int] = frozenset()
    #: An active public page: anyone may read it and subscribe to it.
    open_to_all: bool = False
    #: False for an inactive page: only its teams' members see it (a preview).
    active: bool = True

    @property
    def readable_by_responders(self) -> bool:
        """Whether a team that owns it is not private (DESIGN.md: one company's objects)."""
        return bool(self.team_ids - self.private_team_ids)


def authorize(
    principal: Principal | None, action: Action, target: Target | None = None
) -> Decision:
    """May `principal` (None: anonymous) do `action` to `target` (None: to anything)?"""
    if action == Action.PUBLIC:
        return ALLOW
    if action in (Action.READ_PAGE, Action.SUBSCRIBE):
        return _page(principal, target)
    if principal is None:
        return Decision(
            Outcome.UNAUTHENTICATED, "sign in or give an API key (Authorization: Bearer <key>)"
        )
    if principal.admin or action == Action.OWN_ACCOUNT:
        return ALLOW
    role = _role(principal)
    if role is None or role == Role.STAKEHOLDER:
        # Outcome before the target: a stakeholder learns nothing about other teams here.
        return Decision(
            Outcome.FORBIDDEN,
            "stakeholders have read-only access to their teams' pages, not the admin API",
        )
    if action in ADMIN_ONLY:
        return Decision(Outcome.FORBIDDEN, "this needs an admin (beacon apikey create --admin)")
    if target is None:
        return ALLOW
    member = bool(target.team_ids & principal.team_ids)
    if member:
        return ALLOW
    if target.readable_by_responders:
        if action == Action.READ:
            return ALLOW
        return Decision(Outcome.FORBIDDEN, "only the owning team's members and admins may do this")
    return Decision(Outcome.NOT_FOUND, "not found")


def _role(principal: Principal) -> Role | None:
    try:
        return Role(principal.role)
    except ValueError:
        return None  # an unknown role may do nothing


def _page(principal: Principal | None, target: Target | None) -> Decision:
    if target is None or target.open_to_all:
        return ALLOW
    if principal is not None and (principal.admin or target.team_ids & principal.team_ids):
        if _role(principal) is not None or principal.admin:
            return ALLOW
    if principal is None and target.active:
        return Decision(Outcome.UNAUTHENTICATED, "this status page is private: sign in")
    return Decision(Outcome.NOT_FOUND, "no such status page")


def may(principal: Principal | None, action: Action, target: Target | None = None) -> bool:
    """`authorize(...).allowed`."""
    return authorize(principal, action, target).allowed


# --- targets from the store -----------------------------------------------------------------


def private_team_ids(conn: Connection) -> frozenset[int]:
    """The ids of every private team (a small table, read whole)."""
    return frozenset(conn.execute(sa.select(teams.c.id).where(teams.c.private.is_(True))).scalars())


def team_target(conn: Connection, team_ids: Iterable[int | None]) -> Target:
    """The target of an object owned or managed by `team_ids` (a None among them is no
    team: such an object is the installation's, visible to admins only)."""
    ids = frozenset(t for t in team_ids if t is not None)
    if not ids:
        return Target(frozenset(), frozenset())
    private = frozenset(
        conn.execute(
            sa.select(teams.c.id).where(teams.c.id.in_(sorted(ids)), teams.c.private.is_(True))
        ).scalars()
    )
    return Target(ids, private)


def readable_filter(principal: Principal, column: Any) -> Any:
    """A SQL filter on a team id `column` keeping the rows `principal` may READ: every row
    for an admin; their own teams' and the non-private teams' rows for a responder; their
    own teams' for anyone else."""
    if principal.admin:
        return sa.true()
    if _role(principal) != Role.RESPONDER:
        # A stakeholder reads its own teams' pages only (the web UI's home lists them).
        return member_filter(principal, column)
    public_teams = sa.select(teams.c.id).where(teams.c.private.is_(False))
    return sa.or_(column.in_(sorted(principal.team_ids)), column.in_(public_teams))


def member_filter(principal: Principal, column: Any) -> Any:
    """A SQL filter keeping rows of `principal`'s own teams (all rows for an admin)."""
    if principal.admin:
        return sa.true()
    return column.in_(sorted(principal.team_ids))
