"""Who may see a status page: the one access check every page route asks.

DESIGN.md, "Status page": an inactive page is 404 to everyone but its teams' members (who
see a preview); an active private page sends an anonymous visitor to the login (HTML) or
answers 401 (JSON, feeds, live updates), and a signed-in non-member gets 404. Private and
inactive answers, granted or not, carry `Cache-Control: private, no-store` and
`Vary: Cookie, Authorization` so no shared cache ever keeps them.

The check is pure over a `PageInfo` and a `Viewer`; `load_page_info` reads the first from
the store; the answer is engine.authz's (Action.READ_PAGE), in the forms a page route needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .authz import Action, Outcome, Principal, Target, authorize
from .models import PageType
from .tables import page_teams, status_pages

PRIVATE_HEADERS: dict[str, str] = {
    "Cache-Control": "private, no-store",
    "Vary": "Cookie, Authorization",
}


#: The caller as the access check sees it (engine.authz's principal).
Viewer = Principal


class Want(StrEnum):
    """What the route answers with: HTML may redirect to the login, the rest cannot."""

    HTML = "html"
    DATA = "data"  # JSON, feeds, badge, embed script, live updates


class Verdict(StrEnum):
    ALLOW = "allow"
    LOGIN = "login"  # anonymous visitor of an active private page
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class PageInfo:
    """The facts about a page that access and host selection need."""

    id: int
    public_id: str
    slug: str
    name: str
    type: PageType
    active: bool
    custom_domain: str | None
    team_ids: frozenset[int]

    @property
    def public(self) -> bool:
        """Readable by anyone and cacheable by shared caches: active and public."""
        return self.active and self.type == PageType.PUBLIC


@dataclass(frozen=True)
class Access:
    """The answer for one request. `status` and `headers` are what to send when denied;
    `headers` also go on a granted private or inactive response. `preview` marks a member
    looking at an inactive page."""

    verdict: Verdict
    page: PageInfo | None
    status: int
    headers: dict[str, str]
    message: str
    preview: bool = False

    @property
    def allowed(self) -> bool:
        return self.verdict == Verdict.ALLOW


def load_page_info(conn: Connection, slug: str) -> PageInfo | None:
    """The page with `slug`, or None when there is none."""
    row = conn.execute(sa.select(status_pages).where(status_pages.c.slug == slug)).first()
    if row is None:
        return None
    teams = conn.execute(
        sa.select(page_teams.c.team_id).where(page_teams.c.page_id == row.id)
    ).scalars()
    # The owning team manages the page even if page_teams was never filled in.
    team_ids = frozenset([row.team_id, *teams])
    try:
        page_type = PageType(row.type)
    except ValueError:
        # An unknown type must never make a page public by accident.
        page_type = PageType.PRIVATE
    return PageInfo(
        id=row.id,
        public_id=row.public_id,
        slug=row.slug,
        name=row.name,
        type=page_type,
        active=bool(row.active),
        custom_domain=row.custom_domain,
        team_ids=team_ids,
    )


def is_member(page: PageInfo, viewer: Viewer | None) -> bool:
    """Whether `viewer` belongs to one of the page's teams (admins belong everywhere)."""
    if viewer is None:
        return False
    return viewer.admin or bool(page.team_ids & viewer.team_ids)


def target(page: PageInfo) -> Target:
    """The page as engine.authz sees it (a page's readers do not depend on its teams'
    private flags: only members read a private or inactive page)."""
    return Target(page.team_ids, open_to_all=page.public, active=page.active)


def decide(
    page: PageInfo | None,
    viewer: Viewer | None,
    want: Want,
    next_path: str = "/",
    action: Action = Action.READ_PAGE,
) -> Access:
    """DESIGN.md's answer for `viewer` asking for `page` with a `want` response: what
    engine.authz says, in the forms a page route answers with."""
    if page is None:
        return Access(Verdict.NOT_FOUND, None, 404, {}, "no such status page")
    decision = authorize(viewer, action, target(page))
    if page.public and decision.allowed:
        return Access(Verdict.ALLOW, page, 200, {}, "")
    headers = dict(PRIVATE_HEADERS)
    if decision.allowed:
        return Access(Verdict.ALLOW, page, 200, headers, "", preview=not page.active)
    if decision.outcome != Outcome.UNAUTHENTICATED:
        # Same answer as a page that does not exist: an outsider learns nothing.
        return Access(Verdict.NOT_FOUND, page, 404, headers, "no such status page")
    if want == Want.HTML:
        headers["Location"] = "/login?next=" + quote(next_path, safe="/")
        return Access(Verdict.LOGIN, page, 303, headers, "sign in to see this page")
    headers["WWW-Authenticate"] = 'Bearer realm="beacon"'
    return Access(Verdict.LOGIN, page, 401, headers, "this status page is private: sign in")


def check(
    conn: Connection, slug: str, viewer: Viewer | None, want: Want, next_path: str = "/"
) -> Access:
    """Load the page with `slug` and decide: the call every page route makes."""
    return decide(load_page_info(conn, slug), viewer, want, next_path)
