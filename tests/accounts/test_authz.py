"""engine.authz: the one authorization function, the routes that declare their action, and
the fixes of issue 14 (stakeholders and secrets, the team `private` flag, shared pages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from engine.accounts import create_user
from engine.authz import Action, Outcome, Target, authorize
from engine.runtime import Runtime
from engine.security import new_api_key
from engine.tables import api_keys, teams
from pages.app import all_routes
from pages.authz import ROUTE_ACTIONS, UndeclaredRoute, action_of, declare

from .conftest import PASSWORD, sign_in


@dataclass(frozen=True)
class Who:
    role: str
    team_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def admin(self) -> bool:
        return self.role == "admin"


MINE = Target(frozenset({1}))
PUBLIC_TEAMS = Target(frozenset({2}))
PRIVATE_TEAMS = Target(frozenset({3}), frozenset({3}))
RESPONDER = Who("responder", frozenset({1}))
STAKEHOLDER = Who("stakeholder", frozenset({1}))


def test_the_table_of_design_md() -> None:
    admin = Who("admin")
    assert authorize(admin, Action.MANAGE_USERS).allowed
    assert authorize(admin, Action.READ_SECRETS, PRIVATE_TEAMS).allowed
    # A responder manages its own teams' objects and reads (only reads) other open teams'.
    assert authorize(RESPONDER, Action.MANAGE_SOURCES, MINE).allowed
    assert authorize(RESPONDER, Action.READ_SECRETS, MINE).allowed
    assert authorize(RESPONDER, Action.READ, PUBLIC_TEAMS).allowed
    assert authorize(RESPONDER, Action.READ_SECRETS, PUBLIC_TEAMS).outcome == Outcome.FORBIDDEN
    assert authorize(RESPONDER, Action.MANAGE_SERVICES, PUBLIC_TEAMS).outcome == Outcome.FORBIDDEN
    # A private team is invisible: 404, never 403.
    for action in (Action.READ, Action.READ_SECRETS, Action.POST_INCIDENT):
        assert authorize(RESPONDER, action, PRIVATE_TEAMS).outcome == Outcome.NOT_FOUND
    assert authorize(RESPONDER, Action.MANAGE_TEAMS).outcome == Outcome.FORBIDDEN
    assert authorize(RESPONDER, Action.MANAGE_USERS).outcome == Outcome.FORBIDDEN
    # Stakeholders: nothing of the admin API, not even their own team's objects.
    for action in (Action.READ, Action.READ_SECRETS, Action.MANAGE_PAGES):
        assert authorize(STAKEHOLDER, action, MINE).outcome == Outcome.FORBIDDEN
        assert authorize(STAKEHOLDER, action).outcome == Outcome.FORBIDDEN
    assert authorize(None, Action.READ).outcome == Outcome.UNAUTHENTICATED
    assert authorize(Who("nonsense", frozenset({1})), Action.READ, MINE).status == 403
    # One's own account (personal feed links): any signed-in role; the handler keeps to the
    # caller's own rows. Anonymous callers sign in first.
    for who in (admin, RESPONDER, STAKEHOLDER):
        assert authorize(who, Action.OWN_ACCOUNT).allowed
    assert authorize(None, Action.OWN_ACCOUNT).outcome == Outcome.UNAUTHENTICATED


def test_pages_answer_the_table_too() -> None:
    private_page = Target(frozenset({1}), open_to_all=False, active=True)
    inactive = Target(frozenset({1}), open_to_all=False, active=False)
    public = Target(frozenset({1}), open_to_all=True)
    outsider = Who("responder", frozenset({2}))
    for action in (Action.READ_PAGE, Action.SUBSCRIBE):
        assert authorize(None, action, public).allowed
        assert authorize(STAKEHOLDER, action, private_page).allowed
        assert authorize(None, action, private_page).outcome == Outcome.UNAUTHENTICATED
        assert authorize(outsider, action, private_page).outcome == Outcome.NOT_FOUND
        assert authorize(None, action, inactive).outcome == Outcome.NOT_FOUND
        assert authorize(STAKEHOLDER, action, inactive).allowed


def test_every_route_of_the_app_declares_its_action(client: TestClient) -> None:
    routes = client.app.routes  # type: ignore[attr-defined]
    assert routes
    undeclared = [r.path for r in routes if not isinstance(getattr(r, "action", None), Action)]
    assert undeclared == []
    # No stale entry: every path of the table is a route of the app.
    paths = {r.path for r in all_routes()}
    assert set(ROUTE_ACTIONS) <= paths
    assert action_of(next(r for r in routes if r.path == "/api/v1/users")) == Action.MANAGE_USERS


def test_an_app_with_an_undeclared_route_does_not_start() -> None:
    async def nothing(request: Any) -> None:
        return None

    with pytest.raises(UndeclaredRoute, match="/api/v1/new-thing"):
        declare([*all_routes(), Route("/api/v1/new-thing", nothing)])


# --- through the app --------------------------------------------------------------------------


def _team(rt: Runtime, key: str, private: bool) -> tuple[int, dict[str, str]]:
    key_text, prefix, digest = new_api_key()
    with rt.store.begin() as conn:
        team_id = conn.execute(teams.insert().values(key=key, name=key, private=private))
        assert team_id.inserted_primary_key is not None
        tid = int(team_id.inserted_primary_key[0])
        conn.execute(
            api_keys.insert().values(name=key, team_id=tid, prefix=prefix, key_hash=digest)
        )
    return tid, {"Authorization": f"Bearer {key_text}"}


def test_a_responder_reads_an_open_teams_objects_but_never_their_secrets(
    rt: Runtime, client: TestClient
) -> None:
    _, ops = _team(rt, "ops", private=False)
    _, web = _team(rt, "web", private=False)
    source = client.post(
        "/api/v1/alert-sources",
        json={"key": "am", "name": "AM", "type": "alertmanager"},
        headers=ops,
    ).json()
    assert source["integration_key"] and source["webhook_url"]
    channel = client.post(
        "/api/v1/channels",
        json={"key": "chat", "type": "slack", "url": "https://hooks.slack.example/T0/B0/abc123"},
        headers=ops,
    ).json()
    seen = client.get(f"/api/v1/alert-sources/{source['id']}", headers=web)
    assert seen.status_code == 200
    assert seen.json()["integration_key"] is None and seen.json()["webhook_url"] is None
    listed = client.get("/api/v1/channels", headers=web).json()
    assert [c["url"] for c in listed] == [None]
    assert source["integration_key"] not in client.get("/api/v1/alert-sources", headers=web).text
    changed = client.patch(f"/api/v1/alert-sources/{source['id']}", json={"name": "x"}, headers=web)
    assert changed.status_code == 403
    assert client.delete(f"/api/v1/channels/{channel['id']}", headers=web).status_code == 403
    rotated = client.post("/api/v1/alert-sources/am/rotate-key", headers=web)
    assert rotated.status_code == 403
    assert client.get("/api/v1/alert-sources/am/events", headers=web).status_code == 200


def test_a_private_team_is_invisible_to_other_teams(rt: Runtime, client: TestClient) -> None:
    _, acme = _team(rt, "acme", private=True)
    _, web = _team(rt, "web", private=False)
    service = client.post("/api/v1/services", json={"key": "db", "name": "DB"}, headers=acme)
    sid = service.json()["id"]
    assert client.get(f"/api/v1/services/{sid}", headers=web).status_code == 404
    assert (
        client.patch(f"/api/v1/services/{sid}", json={"name": "x"}, headers=web).status_code == 404
    )
    assert client.get("/api/v1/services", headers=web).json() == []
    assert "acme" not in client.get("/api/v1/teams", headers=web).text
    assert client.get("/api/v1/services/db/why", headers=web).status_code == 404
    made = client.post(
        "/api/v1/services", json={"key": "x", "name": "X", "team": "acme"}, headers=web
    )
    assert made.status_code == 422 and "unknown team 'acme'" in made.text


def test_on_a_shared_page_one_team_cannot_remove_the_other(rt: Runtime, client: TestClient) -> None:
    _, ops = _team(rt, "ops", private=True)
    _, web = _team(rt, "web", private=True)
    admin_key, prefix, digest = new_api_key()
    with rt.store.begin() as conn:
        conn.execute(
            api_keys.insert().values(name="root", admin=True, prefix=prefix, key_hash=digest)
        )
    admin = {"Authorization": f"Bearer {admin_key}"}
    page = client.post(
        "/api/v1/pages",
        json={"slug": "shared", "name": "Shared", "teams": ["ops", "web"]},
        headers=admin,
    ).json()
    url = f"/api/v1/pages/{page['id']}"
    removed = client.patch(url, json={"teams": ["ops"]}, headers=ops)
    assert removed.status_code == 403 and "'web'" in removed.text
    assert client.delete(url, headers=ops).status_code == 403
    assert client.get(url, headers=web).json()["teams"] == ["ops", "web"]
    # Each still manages the page itself, and keeps the other team when it does.
    kept = client.patch(url, json={"name": "Ours", "teams": ["ops", "web"]}, headers=ops)
    assert kept.status_code == 200, kept.text
    assert client.patch(url, json={"teams": ["ops"]}, headers=admin).json()["teams"] == ["ops"]


def test_a_stakeholder_reads_its_private_page_and_nothing_of_the_admin_api(
    rt: Runtime, client: TestClient
) -> None:
    _, acme = _team(rt, "acme", private=True)
    client.post(
        "/api/v1/pages",
        json={"slug": "acme", "name": "ACME", "type": "private", "active": True},
        headers=acme,
    )
    create_user(rt.store, "viewer@acme.test", role="stakeholder", teams=["acme"], password=PASSWORD)
    assert sign_in(client, "viewer@acme.test").status_code == 303
    assert client.get("/p/acme/").status_code == 200
    assert client.get("/p/acme/api/v2/summary.json").status_code == 200
    for path in ("/api/v1/pages", "/api/v1/alert-sources", "/api/v1/openapi.json", "/api/v1/teams"):
        assert client.get(path).status_code == 403, path
    assert client.get("/api/v1/status-pages/acme/domain").status_code == 403
