"""engine.access.decide: DESIGN.md's answers for inactive and private pages, as pure data."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.access import PRIVATE_HEADERS, PageInfo, Verdict, Want, decide
from engine.models import PageType


@dataclass(frozen=True)
class Who:
    """A principal (engine.authz.Principal); members are stakeholders, the least role."""

    admin: bool = False
    role: str = "stakeholder"
    team_ids: frozenset[int] = field(default_factory=frozenset)


MEMBER = Who(team_ids=frozenset({1}))
OUTSIDER = Who(team_ids=frozenset({2}))
ADMIN = Who(admin=True)


def info(*, type: PageType = PageType.PUBLIC, active: bool = True) -> PageInfo:
    return PageInfo(1, "p1", "acme", "ACME", type, active, None, frozenset({1}))


def test_public_active_page_is_open_to_everyone_without_private_headers() -> None:
    for who in (None, OUTSIDER, MEMBER):
        got = decide(info(), who, Want.DATA)
        assert got.allowed and got.headers == {} and not got.preview


def test_unknown_page_is_404() -> None:
    got = decide(None, MEMBER, Want.HTML)
    assert (got.verdict, got.status) == (Verdict.NOT_FOUND, 404)


def test_inactive_page_is_404_to_anonymous_and_outsiders_with_private_headers() -> None:
    for page_type in PageType:
        for who in (None, OUTSIDER):
            for want in Want:
                got = decide(info(type=page_type, active=False), who, want)
                assert (got.verdict, got.status) == (Verdict.NOT_FOUND, 404)
                assert got.headers == PRIVATE_HEADERS


def test_inactive_page_is_a_preview_for_members_and_admins() -> None:
    for who in (MEMBER, ADMIN):
        got = decide(info(active=False), who, Want.HTML)
        assert got.allowed and got.preview and got.headers == PRIVATE_HEADERS


def test_private_page_sends_anonymous_html_visitor_to_login() -> None:
    got = decide(info(type=PageType.PRIVATE), None, Want.HTML, "/p/acme/history?x=1")
    assert (got.verdict, got.status) == (Verdict.LOGIN, 303)
    assert got.headers["Location"] == "/login?next=/p/acme/history%3Fx%3D1"
    assert got.headers["Cache-Control"] == "private, no-store"


def test_private_page_answers_401_to_anonymous_data_requests() -> None:
    got = decide(info(type=PageType.PRIVATE), None, Want.DATA)
    assert (got.verdict, got.status) == (Verdict.LOGIN, 401)
    assert got.headers["Vary"] == "Cookie, Authorization"


def test_private_page_is_404_to_signed_in_outsiders() -> None:
    for want in Want:
        got = decide(info(type=PageType.PRIVATE), OUTSIDER, want)
        assert (got.verdict, got.status) == (Verdict.NOT_FOUND, 404)


def test_private_page_is_open_to_members_with_private_headers() -> None:
    for who in (MEMBER, ADMIN):
        got = decide(info(type=PageType.PRIVATE), who, Want.HTML)
        assert got.allowed and not got.preview and got.headers == PRIVATE_HEADERS
