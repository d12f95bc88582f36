"""The isolation matrix (issue 14's acceptance): three private customer teams, each with a
private page, services, an incident, maintenance, a subscriber (with a delivery), a
template, a source, a
channel, an API key, a responder and a stakeholder; plus one team that is not private.

For every route of the app (enumerated from the app: a route the matrix cannot fill in
fails it) and every principal (anonymous, each role of each team, each key, an admin key),
the answer is the one DESIGN.md's table gives (engine.authz), and no answer to anyone
outside a customer team carries anything of that team. One app, one store, in-process
clients: the whole matrix is one test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from starlette.routing import Route
from starlette.testclient import TestClient

from engine import feed_tokens
from engine import subscribers as subs
from engine.accounts import create_api_key
from engine.authz import ADMIN_ONLY, OPEN, Action
from engine.runtime import Runtime
from engine.tables import api_keys, deliveries, incident_updates, users
from pages.app import create_app
from pages.authz import action_of, self_gated

from .conftest import BASE_URL, make_user, sign_in

CUSTOMERS = ("c1", "c2", "c3")
OPEN_TEAM = "shared"
#: The customer whose objects fill every route's path (the others are its outsiders).
TARGET = "c1"
SOON = datetime.now(UTC) + timedelta(days=2)


def marker(team: str) -> str:
    """A string only team `team`'s objects carry: found in an answer, it leaked."""
    return f"zz{team}mark"


@dataclass
class World:
    admin: dict[str, str]
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    ids: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Principal:
    name: str
    team: str | None  # None: anonymous or admin
    role: str  # anonymous | admin | responder | stakeholder | key


def _ok(answer: Any) -> Any:
    assert answer.status_code in (200, 201, 202), answer.text
    return answer.json()


def build_world(rt: Runtime, client: TestClient) -> World:
    world = World(
        admin={"Authorization": f"Bearer {create_api_key(rt.store, name='root', admin=True)}"}
    )
    for team in (*CUSTOMERS, OPEN_TEAM):
        private = team != OPEN_TEAM
        m = marker(team)
        _ok(
            client.post(
                "/api/v1/teams",
                json={"key": team, "name": m, "private": private},
                headers=world.admin,
            )
        )
        key = {"Authorization": f"Bearer {create_api_key(rt.store, name=m, team=team)}"}
        world.keys[team] = key
        ids: dict[str, Any] = {}
        svc = _ok(
            client.post(
                "/api/v1/services",
                json={"key": f"api-{team}", "name": m, "group": "core"},
                headers=key,
            )
        )
        ids["service"] = svc["id"]
        page = _ok(
            client.post(
                "/api/v1/pages",
                json={
                    "slug": f"page-{team}",
                    "name": m,
                    "type": "private" if private else "public",
                    "services": [svc["id"]],
                    "active": True,
                },
                headers=key,
            )
        )
        ids["page"] = page["id"]
        ids["slug"] = page["slug"]
        ids["template"] = _ok(
            client.post("/api/v1/incident-templates", json={"key": "down", "title": m}, headers=key)
        )["id"]
        source = _ok(
            client.post(
                "/api/v1/alert-sources",
                json={"key": f"src-{team}", "name": m, "type": "alertmanager"},
                headers=key,
            )
        )
        ids["source"] = source["id"]
        ids["source_key"] = source["key"]
        ids["integration_key"] = source["integration_key"]
        ids["channel"] = _ok(
            client.post(
                "/api/v1/channels",
                json={"key": "chat", "type": "slack", "url": f"https://hooks.slack.example/{m}"},
                headers=key,
            )
        )["id"]
        incident = _ok(
            client.post(
                "/api/v1/incidents",
                json={"title": m, "message": m, "impacts": {f"api-{team}": "major_outage"}},
                headers=key,
            )
        )
        ids["incident"] = incident["id"]
        ids["incident_public"] = incident["public_id"]
        ids["window"] = _ok(
            client.post(
                "/api/v1/maintenance-windows",
                json={
                    "title": m,
                    "starts_at": SOON.isoformat(),
                    "ends_at": (SOON + timedelta(hours=1)).isoformat(),
                    "services": [svc["id"]],
                },
                headers=key,
            )
        )["id"]
        with rt.store.read() as conn:
            ids["update"] = conn.execute(
                sa.select(incident_updates.c.id).where(
                    incident_updates.c.incident_id == incident["id"]
                )
            ).scalar()
            ids["key"] = conn.execute(sa.select(api_keys.c.id).where(api_keys.c.name == m)).scalar()
        for role in ("responder", "stakeholder"):
            make_user(rt, f"{role}@{team}.test", role=role, teams=(team,))
        with rt.store.read() as conn:
            ids["user"] = conn.execute(
                sa.select(users.c.id).where(users.c.email == f"responder@{team}.test")
            ).scalar()
        with rt.store.begin() as conn:
            # The stakeholder's personal feed link to the team's page (engine.feed_tokens).
            holder = conn.execute(
                sa.select(users.c.id).where(users.c.email == f"stakeholder@{team}.test")
            ).scalar_one()
            link = feed_tokens.create(conn, holder, page["id"], actor="matrix")
            ids["feed_link"], ids["feed_token"] = link.id, link.token
        ids["subscriber"] = _subscriber(rt, team, page["id"])
        world.ids[team] = ids
    return world


def subscriber_marker(team: str) -> str:
    """A string only team `team`'s subscriber carries: its managers alone (the team's
    responders and keys, admins) may see it, even where the team's other objects are
    readable (subscribers are people's addresses)."""
    return f"zz{team}subscriber"


#: The secret part of the webhook subscribed to each public page: its path and query. No
#: answer may carry it, not even to the page's managers or an admin (they see its scheme
#: and host, which carry the subscriber marker).
WEBHOOK_SECRET_PART = "zzhookpathsecret"


def _subscriber(rt: Runtime, team: str, page_id: int) -> int:
    """A member subscribed to the team's page (its address carries the subscriber marker),
    with a delivery whose failure reason carries both markers: the subscriber list, export
    and delivery log have something to leak."""
    m = subscriber_marker(team)
    user_id = make_user(rt, f"{m}@{team}.test", role="stakeholder", teams=(team,))
    with rt.store.begin() as conn:
        page = subs.page_by_id(conn, page_id)
        assert page is not None
        if page.private:
            found = subs.subscribe(conn, page, "user", f"{m}@{team}.test", user_id=user_id)
        else:
            found = subs.subscribe(conn, page, "email", f"{m}@{team}.test")
            url = f"https://{m}.hooks.test/{WEBHOOK_SECRET_PART}?t={WEBHOOK_SECRET_PART}"
            subs.subscribe(conn, page, "webhook", url)
        key = f"incident-update:1:page:{page_id}"
        now = datetime.now(UTC)
        conn.execute(
            deliveries.insert().values(
                dedup_key=f"{key}:subscriber:{found.subscriber_id}",
                subscriber_id=found.subscriber_id,
                kind="subscriber",
                message={"notice": key, "channel": str(found.channel), "source": None},
                status="failed",
                attempts=8,
                last_error=f"gave up: {m} {marker(team)}",
                created_at=now,
                updated_at=now,
            )
        )
    return found.subscriber_id


def principals() -> list[Principal]:
    out = [Principal("anonymous", None, "anonymous"), Principal("admin key", None, "admin")]
    for team in (*CUSTOMERS, OPEN_TEAM):
        for role in ("responder", "stakeholder", "key"):
            out.append(Principal(f"{role} of {team}", team, role))
    return out


def fill(path: str, ids: dict[str, Any]) -> str | None:
    """`path` with its parameters naming the target team's objects (None: a parameter the
    matrix does not know, which fails the test)."""
    collection = path.removeprefix("/api/v1/").removeprefix("/admin/").split("/", 1)[0]
    by_collection = {
        "services": ids["service"],
        "teams": ids["team"],
        "users": ids["user"],
        "api-keys": ids["key"],
        "keys": ids["key"],
        "channels": ids["channel"],
        "incident-templates": ids["template"],
        "alert-sources": ids["source"],
        "sources": ids["source"],
        "pages": ids["page"],
        "incidents": ids["incident"],
        "maintenance-windows": ids["window"],
        "maintenance": ids["window"],
        "feed-links": ids["feed_link"],
        "account": ids["feed_link"],
    }
    values = {
        "slug": ids["slug"],
        "update_id:int": ids["update"],
        "name": "core",
        "incident": ids["incident_public"],
        "digest": "0" * 64,
        "integration_key": ids["integration_key"],
        "token": "not-a-token",
        "kind:str": "invite",
        "token:str": "not-a-token",
        "claim:int": 1,
        "sid:int": ids["subscriber"],
    }
    if "/feeds/{token}/" in path:
        values["token"] = FEED_TOKEN  # the asking principal's own link (see the test)
    if "/services/{key}" in path:
        values["key"] = f"api-{ids['team_key']}"
    elif "/alert-sources/{key}" in path:
        values["key"] = ids["source_key"]
    if "{id:int}" in path:
        if collection not in by_collection:
            return None
        values["id:int"] = by_collection[collection]
    try:
        return re.sub(r"\{([^}]+)\}", lambda m: str(values[m.group(1)]), path)
    except KeyError:
        return None


#: Stands for the asking principal's team's feed link in a filled path: a link is its
#: holder's credential, so each principal asks with its own (a made-up one without a team).
FEED_TOKEN = "FEED-TOKEN"


def relation(who: Principal, team: str | None) -> str:
    if who.role == "admin":
        return "admin"
    if who.role == "anonymous":
        return "anonymous"
    if team is not None and who.team == team:
        return "member " + ("stakeholder" if who.role == "stakeholder" else "responder")
    return "outsider " + ("stakeholder" if who.role == "stakeholder" else "responder")


#: Routes whose answer to an allowed caller may be 404 all the same: the matrix fills them
#: with a made-up asset digest, token, claim or user lookup.
MAY_BE_MISSING = (
    "/assets/",
    "/subscriptions/",
    "/subscribers/",
    "/account/",
    "/claims/",
    "/rejected",
)


def expected(
    action: Action, rel: str, path: str, targeted: bool, public: bool = False, write: bool = False
) -> set[int] | None:
    """The statuses the table allows (None: any answer that is not a refusal). `public`:
    the target is the open team's (its page is public, the team not private)."""
    if action == Action.PUBLIC:
        return None
    if action == Action.OWN_ACCOUNT:
        # One's own feed links: any signed-in user; a link is its holder's alone (the target
        # team's stakeholder here), anyone else's answer is 404 (403: the UI's CSRF check).
        if rel == "anonymous":
            return {303, 403} if self_gated(path) else {401}
        if not targeted or rel == "member stakeholder":
            return None
        return {403, 404} if self_gated(path) else {404}
    if action in OPEN:
        if public or not targeted:
            return None
        if rel in ("admin", "member responder", "member stakeholder"):
            return None
        if rel == "anonymous":
            return {401, 303}
        return {404}
    if self_gated(path):
        if rel == "anonymous":
            return {303, 403}
        if "stakeholder" in rel:
            return {404, 403}
    if rel == "anonymous":
        return {401}
    if "stakeholder" in rel:
        return {403}
    if rel == "admin":
        return None
    if action in ADMIN_ONLY:
        return {403, 404}
    if rel == "outsider responder" and targeted:
        if self_gated(path) and write:
            return {403, 404}  # the UI's forms: the CSRF check may refuse first
        if public:  # a team that is not private: its objects are read, not changed
            if self_gated(path) and action != Action.READ:
                return {404}  # the web UI answers 404 for what a caller may not do
            return None if action == Action.READ else {403}
        return {404}
    return None


REFUSALS = {401, 403, 404}


def test_the_isolation_matrix(rt: Runtime) -> None:
    app = create_app(rt)
    with TestClient(app, base_url=BASE_URL) as setup:
        world = build_world(rt, setup)
        for team in world.ids:
            world.ids[team]["team"] = _team_id(setup, world, team)
            world.ids[team]["team_key"] = team
        clients: dict[str, TestClient] = {}
        headers: dict[str, dict[str, str]] = {}
        for who in principals():
            client = TestClient(app, base_url=BASE_URL)
            headers[who.name] = {"Origin": BASE_URL}
            if who.role in ("responder", "stakeholder"):
                assert sign_in(client, f"{who.role}@{who.team}.test").status_code == 303
            elif who.role == "key":
                headers[who.name].update(world.keys[str(who.team)])
            elif who.role == "admin":
                headers[who.name].update(world.admin)
            clients[who.name] = client

        uncovered: list[str] = []
        wrong: list[str] = []
        leaks: list[str] = []
        targets = [TARGET, OPEN_TEAM]
        for route in app.routes:
            assert isinstance(route, Route), route
            action = action_of(route)
            assert action is not None, route.path
            methods = sorted((route.methods or set()) - {"HEAD"})
            for target in targets:
                url = fill(route.path, world.ids[target])
                if url is None:
                    uncovered.append(route.path)
                    continue
                targeted = url != route.path or "{" in route.path
                for method in methods:
                    for who in principals():
                        rel = relation(who, target if targeted else None)
                        allowed = expected(
                            action,
                            rel,
                            route.path,
                            targeted,
                            public=target == OPEN_TEAM,
                            write=method != "GET",
                        )
                        if route.path.endswith("/live") and allowed is None:
                            continue  # an event stream: it would not end (denials are checked)
                        if method != "GET" and allowed is None:
                            continue  # a change the caller may make: it would alter the world
                        if method != "GET" and action == Action.PUBLIC:
                            continue  # sign-in, sign-out, intake: not an authorization matter
                        asked = url
                        if FEED_TOKEN in url:
                            own = world.ids[who.team]["feed_token"] if who.team else "bf_none"
                            asked = url.replace(FEED_TOKEN, own)
                        answer = clients[who.name].request(
                            method,
                            asked,
                            headers={**headers[who.name], "Content-Type": "application/json"},
                            content=b"{}",
                            follow_redirects=False,
                        )
                        status = answer.status_code
                        where = f"{method} {url} as {who.name}: {status}"
                        if status >= 500:
                            wrong.append(where)
                        elif action == Action.SUBSCRIBE and who.role in ("key", "admin"):
                            pass  # a private page's members subscribe as themselves, not keys
                        elif route.path == "/p/{slug}" and status == 308:
                            pass  # to /p/<slug>/ whatever the slug: it tells nothing
                        elif FEED_TOKEN in url:
                            # A feed link reads its own page and no other, whoever sends it.
                            if status != (200 if who.team == target else 404):
                                wrong.append(where + " (a feed link reads its own page only)")
                        elif action == Action.PUBLIC:
                            pass  # answered whoever asks (a missing token is its own 404)
                        elif allowed is None and not self_gated(route.path):
                            # (The web UI may show less than the table allows: admins
                            # alone edit rules there; only its refusals are checked.)
                            if status in REFUSALS and not (
                                status == 404 and any(p in url for p in MAY_BE_MISSING)
                            ):
                                if not (action in ADMIN_ONLY and who.role != "admin"):
                                    wrong.append(where + " (allowed by the table)")
                        elif allowed is not None and status not in allowed:
                            wrong.append(where + f" (the table says {sorted(allowed)})")
                        if WEBHOOK_SECRET_PART in answer.text:
                            leaks.append(f"{where} carries a webhook subscriber's URL path")
                        if who.role != "admin":
                            for other in CUSTOMERS:
                                if other != who.team and marker(other) in answer.text:
                                    leaks.append(f"{where} carries {other}'s data")
                            for team in (*CUSTOMERS, OPEN_TEAM):
                                manager = who.team == team and who.role in ("responder", "key")
                                if not manager and subscriber_marker(team) in answer.text:
                                    leaks.append(f"{where} carries {team}'s subscribers")
        for client in clients.values():
            client.close()
    assert uncovered == []
    assert leaks == [], "\n".join(leaks)
    assert wrong == [], "\n".join(wrong)


def _team_id(client: TestClient, world: World, team: str) -> int:
    teams = client.get("/api/v1/teams", headers=world.admin).json()
    return int(next(t["id"] for t in teams if t["key"] == team))
