"""The admin API: CRUD for every object, team scoping, auth, and JSON errors with fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.tables import audit_log, deadlines, services
from pages.admin import ENDPOINTS
from pages.admin.openapi import openapi_path
from tests.rules.store_helpers import firing_count, stored_activation
from workers.jobs import handle_override_expiry

from .conftest import Api

PASSWORD = "correct horse battery staple"


def setup_team(
    api: Api, key: str = "platform", *, private: bool = False
) -> tuple[int, dict[str, str]]:
    made = api.client.post(
        "/api/v1/teams",
        json={"key": key, "name": key.title(), "private": private},
        headers=api.admin,
    )
    assert made.status_code == 201, made.text
    return made.json()["id"], api.key_for(key)


def crud(
    api: Api, headers: dict[str, str], path: str, body: dict[str, Any], patch: dict[str, Any]
) -> dict[str, Any]:
    """Create, read, list, update and delete one object; returns what was last read."""
    made = api.client.post(path, json=body, headers=headers)
    assert made.status_code == 201, made.text
    url = f"{path}/{made.json()['id']}"
    # Secrets are answered once, to the request that made them (docs/security.md): a read
    # shows the object without them.
    once = {"integration_key", "webhook_url"} if "alert-sources" in path else set()
    once |= {"url"} if "channels" in path else set()
    assert api.client.get(url, headers=headers).json() == {**made.json(), **dict.fromkeys(once)}
    assert made.json()["id"] in [o["id"] for o in api.client.get(path, headers=headers).json()]
    changed = api.client.patch(url, json=patch, headers=headers)
    assert changed.status_code == 200, changed.text
    for name, value in patch.items():
        assert changed.json()[name] == value, name
    assert api.client.delete(url, headers=headers).status_code == 204
    assert api.client.get(url, headers=headers).status_code == 404
    return changed.json()


def test_every_object_can_be_created_read_updated_and_deleted(api: Api) -> None:
    team_id, key = setup_team(api)
    crud(api, api.admin, "/api/v1/teams", {"key": "other"}, {"name": "Other team"})
    crud(
        api,
        api.admin,
        "/api/v1/users",
        {"email": "ops@example.com", "role": "responder", "teams": ["platform"]},
        {"name": "Ops", "teams": []},
    )
    crud(api, key, "/api/v1/services", {"key": "db", "name": "Database"}, {"name": "DB"})
    crud(
        api,
        key,
        "/api/v1/incident-templates",
        {"key": "down", "title": "Down: {{ event.summary }}"},
        {"title": "Still down"},
    )
    crud(
        api,
        key,
        "/api/v1/alert-sources",
        {"key": "am", "name": "AM", "type": "alertmanager"},
        {"name": "Alertmanager", "enabled": False},
    )
    channel = crud(
        api,
        key,
        "/api/v1/channels",
        {"key": "ops", "type": "webhook", "url": "https://hooks.example/x", "secret": "s3"},
        {"url": "https://hooks.example/y", "enabled": False},
    )
    assert channel["has_secret"] and "s3" not in str(channel)
    api_svc = api.client.post(
        "/api/v1/services", json={"key": "api", "name": "API", "group": "Core"}, headers=key
    ).json()
    page = crud(
        api,
        key,
        "/api/v1/pages",
        {"slug": "status", "name": "Status", "services": [api_svc["id"]], "active": True},
        {"name": "Our status", "services": []},
    )
    assert page["url"].endswith("/p/status/")
    start = datetime.now(UTC) + timedelta(days=1)
    crud(
        api,
        key,
        "/api/v1/maintenance-windows",
        {
            "title": "Upgrade",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "services": [api_svc["id"]],
        },
        {"title": "Database upgrade"},
    )
    incident = crud(
        api,
        key,
        "/api/v1/incidents",
        {"title": "API errors", "impacts": {str(api_svc["id"]): "partial_outage"}},
        {"title": "API errors for EU customers", "impact_override": "critical"},
    )
    assert incident["services"] == [{"service_id": api_svc["id"], "impact": "partial_outage"}]
    keys = api.client.post("/api/v1/api-keys", json={"name": "ci"}, headers=key)
    assert keys.status_code == 201 and keys.json()["key"].startswith("bk_")
    assert keys.json()["team"] == "platform"
    assert (
        api.client.delete(f"/api/v1/api-keys/{keys.json()['id']}", headers=key).status_code == 204
    )
    with api.store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one() > 10
    assert team_id


def test_incident_updates_backdate_and_move_statuses(api: Api) -> None:
    _, key = setup_team(api)
    svc = api.client.post("/api/v1/services", json={"key": "db", "name": "DB"}, headers=key).json()
    started = datetime.now(UTC) - timedelta(hours=3)
    incident = api.client.post(
        "/api/v1/incidents",
        json={
            "title": "Slow queries",
            "impacts": {str(svc["id"]): "degraded"},
            "started_at": started.isoformat(),
        },
        headers=key,
    ).json()
    assert datetime.fromisoformat(incident["started_at"]) == started
    assert (
        api.client.get(f"/api/v1/services/{svc['id']}", headers=key).json()["status"] == "degraded"
    )
    base = f"/api/v1/incidents/{incident['id']}/updates"
    shown = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    update = api.client.post(
        base,
        json={"status": "identified", "message": "Found it", "display_at": shown},
        headers=key,
    )
    assert update.status_code == 201, update.text
    url = f"{base}/{update.json()['id']}"
    edited = api.client.patch(url, json={"message": "Found the slow index"}, headers=key)
    assert edited.json()["body"] == "Found the slow index"
    assert len(api.client.get(base, headers=key).json()) == 2
    resolved = api.client.post(base, json={"status": "resolved", "message": "Fixed"}, headers=key)
    assert resolved.status_code == 201
    assert api.client.get(f"/api/v1/services/{svc['id']}", headers=key).json()["status"] == (
        "operational"
    )
    assert api.client.delete(url, headers=key).status_code == 204
    assert api.client.get(url, headers=key).status_code == 404


def test_an_override_wins_until_cleared_or_expired(api: Api) -> None:
    _, key = setup_team(api)
    svc = api.client.post("/api/v1/services", json={"key": "db", "name": "DB"}, headers=key).json()
    url = f"/api/v1/services/{svc['id']}/override"
    until = datetime.now(UTC) + timedelta(hours=1)
    set_ = api.client.put(
        url,
        json={"status": "major_outage", "until": until.isoformat(), "reason": "fire"},
        headers=key,
    )
    assert set_.status_code == 200, set_.text
    assert set_.json()["status"] == "major_outage"
    assert set_.json()["override"]["reason"] == "fire"
    with api.store.read() as conn:
        due = conn.execute(
            sa.select(deadlines.c.due_at).where(deadlines.c.kind == "service.override")
        )
        assert due.scalar_one() == until
    # The deadline's handler ends an override whose time has passed.
    with api.store.begin() as conn:
        conn.execute(
            services.update().values(override_until=datetime.now(UTC) - timedelta(seconds=1))
        )

    class Rt:
        store = api.store

    handle_override_expiry(Rt(), [{"service_id": svc["id"]}])  # type: ignore[arg-type]
    after = api.client.get(f"/api/v1/services/{svc['id']}", headers=key).json()
    assert after["status"] == "operational" and after["override"] is None

    api.client.put(url, json={"status": "degraded"}, headers=key)
    cleared = api.client.delete(url, headers=key)
    assert cleared.json()["status"] == "operational"
    past = api.client.put(
        url, json={"status": "degraded", "until": "2020-01-01T00:00:00Z"}, headers=key
    )
    assert past.status_code == 422
    assert past.json()["error"]["fields"][0]["field"] == "until"


def test_groups_regroup_services_and_pages(api: Api) -> None:
    team_id, key = setup_team(api)
    ids = [
        api.client.post("/api/v1/services", json={"key": k, "name": k}, headers=key).json()["id"]
        for k in ("a", "b")
    ]
    base = f"/api/v1/teams/{team_id}/groups"
    made = api.client.post(base, json={"name": "Core", "services": ids}, headers=key)
    assert made.status_code == 201, made.text
    renamed = api.client.patch(
        f"{base}/Core", json={"name": "Edge", "services": ids[:1]}, headers=key
    )
    assert renamed.json() == {"team": "platform", "name": "Edge", "services": ids[:1]}
    assert api.client.get(f"/api/v1/services/{ids[1]}", headers=key).json()["group"] is None
    assert api.client.delete(f"{base}/Edge", headers=key).status_code == 204
    assert api.client.get(f"{base}/Edge", headers=key).status_code == 404


def test_it_answers_401_without_a_key(api: Api) -> None:
    for path in ("/api/v1/openapi.json", "/api/v1/services", "/api/v1/teams", "/api/v1/pages/1"):
        answer = api.client.get(path)
        assert answer.status_code == 401, path
        assert answer.json()["error"]["status"] == 401
    assert (
        api.client.get("/api/v1/services", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


def test_a_private_teams_objects_are_404_to_other_teams(api: Api) -> None:
    _, mine = setup_team(api, "mine", private=True)
    _, theirs = setup_team(api, "theirs", private=True)
    svc = api.client.post(
        "/api/v1/services", json={"key": "db", "name": "DB"}, headers=theirs
    ).json()
    url = f"/api/v1/services/{svc['id']}"
    assert api.client.get(url, headers=mine).status_code == 404
    assert api.client.patch(url, json={"name": "x"}, headers=mine).status_code == 404
    assert api.client.delete(url, headers=mine).status_code == 404
    assert api.client.get("/api/v1/services", headers=mine).json() == []
    assert api.client.get(url, headers=theirs).status_code == 200
    made = api.client.post(
        "/api/v1/services", json={"key": "x", "name": "X", "team": "theirs"}, headers=mine
    )
    assert made.status_code == 422
    page = api.client.post(
        "/api/v1/pages", json={"slug": "p", "name": "P", "services": [svc["id"]]}, headers=mine
    )
    assert page.status_code == 422
    assert page.json()["error"]["fields"][0]["field"] == "services"


def test_team_keys_cannot_manage_teams_or_users(api: Api) -> None:
    _, key = setup_team(api)
    assert api.client.post("/api/v1/teams", json={"key": "x"}, headers=key).status_code == 403
    assert api.client.get("/api/v1/users", headers=key).status_code == 403
    made = api.client.post("/api/v1/api-keys", json={"name": "x", "admin": True}, headers=key)
    assert made.status_code == 422


def test_bad_bodies_get_422_with_field_errors(api: Api) -> None:
    _, key = setup_team(api)
    answer = api.client.post(
        "/api/v1/services", json={"key": "Bad Key", "name": "", "stauts": 1}, headers=key
    )
    assert answer.status_code == 422
    fields = {f["field"] for f in answer.json()["error"]["fields"]}
    assert fields == {"key", "name", "stauts"}
    assert api.client.post("/api/v1/services", content=b"{", headers=key).status_code == 400
    assert api.client.post("/api/v1/services", content=b"", headers=key).status_code == 422
    source = api.client.post(
        "/api/v1/alert-sources", json={"key": "x", "name": "X", "type": "nagios"}, headers=key
    )
    assert source.status_code == 422 and source.json()["error"]["fields"][0]["field"] == "type"
    dup = api.client.post("/api/v1/services", json={"key": "a", "name": "A"}, headers=key)
    assert dup.status_code == 201
    assert (
        api.client.post("/api/v1/services", json={"key": "a", "name": "A"}, headers=key).status_code
        == 409
    )
    assert api.client.get(f"/api/v1/services/{2**40}", headers=key).status_code == 404


def test_the_openapi_document_matches_the_routes(api: Api) -> None:
    async def other(request: Request) -> Response:
        """Another module's route."""
        return Response()

    app = api.client.app
    app.router.routes.append(Route("/api/v1/things/{key}", other, methods=["POST"]))  # type: ignore[attr-defined]
    doc = api.client.get("/api/v1/openapi.json", headers=api.admin).json()
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routed = {
        (method, openapi_path(r.path))
        for r in app.routes  # type: ignore[attr-defined]
        if isinstance(r, Route) and r.path.startswith("/api/v1/") and "openapi" not in r.path
        for method in (r.methods or set()) - {"HEAD"}
    }
    assert documented == routed
    assert doc["paths"]["/api/v1/things/{key}"]["post"]["summary"] == "Another module's route."
    for ep in ENDPOINTS:
        path = openapi_path(ep.path).replace("{id}", "1").replace("{update_id}", "1")
        path = path.replace("{sid}", "1")
        answer = api.client.request(ep.method, path.replace("{name}", "x"))
        assert answer.status_code == 401, (ep.method, path)


def test_a_page_logo_is_uploaded_checked_and_removed(api: Api) -> None:
    from pathlib import Path

    _, key = setup_team(api)
    page = api.client.post("/api/v1/pages", json={"slug": "s", "name": "S"}, headers=key).json()
    url = f"/api/v1/pages/{page['id']}/logo"
    png = (Path(__file__).resolve().parents[2] / "examples" / "assets" / "logo.png").read_bytes()
    uploaded = api.client.put(url, content=png, headers=key)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["has_logo"] is True
    bad = api.client.put(url, content=b"<html>no</html>", headers=key)
    assert bad.status_code == 422 and "not a known image type" in bad.text
    huge = api.client.put(url, content=b"\x89PNG\r\n\x1a\n" + b"0" * 600_000, headers=key)
    assert huge.status_code == 413
    ico = api.client.put(url.replace("logo", "favicon"), content=png, headers=key)
    assert ico.json()["has_favicon"] is True
    assert api.client.delete(url, headers=key).json()["has_logo"] is False


def test_a_signed_in_stakeholder_gets_nothing_of_the_admin_api(api: Api) -> None:
    # DESIGN.md: stakeholders read their teams' pages, "nothing of the admin API, and never
    # a secret" (issue 14: they read integration keys through its GETs).
    from engine.accounts import create_user

    _, key = setup_team(api)
    svc = api.client.post("/api/v1/services", json={"key": "db", "name": "DB"}, headers=key).json()
    create_user(
        api.store, "viewer@example.com", role="stakeholder", teams=["platform"], password=PASSWORD
    )
    form = api.client.get("/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    signed_in = api.client.post(
        "/login",
        data={"email": "viewer@example.com", "password": PASSWORD, "csrf": csrf},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    read = api.client.get(f"/api/v1/services/{svc['id']}")
    assert read.status_code == 403
    assert "stakeholders have read-only access" in read.text
    assert api.client.get("/api/v1/alert-sources").status_code == 403
    changed = api.client.patch(
        f"/api/v1/services/{svc['id']}",
        json={"name": "x"},
        headers={"Origin": "http://testserver"},  # from Beacon's own pages: no CSRF refusal
    )
    assert changed.status_code == 403
    assert "stakeholders have read-only access" in changed.text


def test_services_are_named_by_id_or_by_key(api: Api) -> None:
    team_id, key = setup_team(api)
    db, web = (
        api.client.post("/api/v1/services", json={"key": k, "name": k}, headers=key).json()["id"]
        for k in ("db", "web")
    )
    page = api.client.post(
        "/api/v1/pages", json={"slug": "s", "name": "S", "services": ["db", web]}, headers=key
    )
    assert page.status_code == 201, page.text
    assert page.json()["services"] == [db, web]
    patched = api.client.patch(
        f"/api/v1/pages/{page.json()['id']}", json={"services": ["web"]}, headers=key
    )
    assert patched.json()["services"] == [web]
    group = api.client.post(
        f"/api/v1/teams/{team_id}/groups", json={"name": "Core", "services": ["db"]}, headers=key
    )
    assert group.json()["services"] == [db]
    start = datetime.now(UTC) + timedelta(days=1)
    window = api.client.post(
        "/api/v1/maintenance-windows",
        json={
            "title": "Upgrade",
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
            "services": ["web"],
        },
        headers=key,
    )
    assert window.status_code == 201, window.text
    assert window.json()["services"] == [web]
    incident = api.client.post(
        "/api/v1/incidents",
        json={"title": "Slow", "impacts": {"db": "degraded", str(web): "major_outage"}},
        headers=key,
    )
    assert incident.status_code == 201, incident.text
    affected = {s["service_id"]: s["impact"] for s in incident.json()["services"]}
    assert affected == {db: "degraded", web: "major_outage"}
    update = api.client.post(
        f"/api/v1/incidents/{incident.json()['id']}/updates",
        json={"message": "Web is back", "impacts": {"db": "degraded"}},
        headers=key,
    )
    assert update.status_code == 201, update.text
    assert api.client.get(f"/api/v1/services/{web}", headers=key).json()["status"] == (
        "operational"
    )

    # Keys may be all digits: an id's digits name the id, other digit strings a key.
    bond = api.client.post("/api/v1/services", json={"key": "007", "name": "007"}, headers=key)
    named = api.client.post(
        "/api/v1/incidents", json={"title": "Q", "impacts": {"007": "degraded"}}, headers=key
    )
    assert named.status_code == 201, named.text
    assert [s["service_id"] for s in named.json()["services"]] == [bond.json()["id"]]
    long = api.client.post(
        "/api/v1/incidents",
        json={"title": "Q", "impacts": {"99999999999999999999": "degraded"}},
        headers=key,
    )
    assert long.status_code == 422, long.text

    # A key no team of the object has, a service named twice, a key two teams share.
    unknown = api.client.post(
        "/api/v1/pages", json={"slug": "t", "name": "T", "services": ["nope"]}, headers=key
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["fields"] == [
        {"field": "services", "message": "no service with key 'nope' in this team"}
    ]
    twice = api.client.post(
        "/api/v1/incidents",
        json={"title": "X", "impacts": {"db": "degraded", str(db): "degraded"}},
        headers=key,
    )
    assert twice.status_code == 422
    assert twice.json()["error"]["fields"][0]["field"] == "impacts"
    setup_team(api, "other")
    api.client.post(
        "/api/v1/services", json={"key": "db", "name": "db", "team": "other"}, headers=api.admin
    )
    shared = api.client.post(
        "/api/v1/pages",
        json={"slug": "both", "name": "Both", "teams": ["platform", "other"], "services": ["db"]},
        headers=api.admin,
    )
    assert shared.status_code == 422
    assert "give its id" in shared.json()["error"]["fields"][0]["message"]


def test_deleting_a_source_takes_its_firing_alerts_out_of_their_activations_count(
    api: Api,
) -> None:
    team_id, key = setup_team(api)
    ids = {}
    for source in ("am", "kuma"):
        made = api.client.post(
            "/api/v1/alert-sources",
            json={"key": source, "name": source, "type": "alertmanager"},
            headers=key,
        )
        ids[source] = made.json()["id"]
    alerts = [(ids["am"], "a", True), (ids["kuma"], "k", True), (ids["kuma"], "gone", False)]
    act = stored_activation(api.store, team_id, alerts, firing=2)
    # Another whose only firing alert is the source's: no resolve can reach it any more.
    orphan = stored_activation(api.store, team_id, [(ids["kuma"], "o", True)], firing=1)
    url = f"/api/v1/alert-sources/{ids['kuma']}"
    assert api.client.delete(url, headers=key).status_code == 204
    assert firing_count(api.store, act) == 1
    assert firing_count(api.store, orphan) == 0
    with api.store.read() as conn:
        due = conn.execute(sa.select(deadlines.c.kind, deadlines.c.key)).all()
    # The rules clock ends it (tests/rules/test_evaluate_store.py shows how).
    assert [tuple(d) for d in due] == [("rules.tick", f"activation:{orphan}")]


def test_a_malformed_field_is_explained_in_words_not_a_regular_expression(api: Api) -> None:
    _, key = setup_team(api)
    answer = api.client.post(
        "/api/v1/alert-sources",
        json={
            "key": "Bad Key",
            "name": "X",
            "type": "alertmanager",
            "signing_secret": "",
            "rate_limit": "lots",
        },
        headers=key,
    )
    assert answer.status_code == 422
    messages = {f["field"]: f["message"] for f in answer.json()["error"]["fields"]}
    assert messages == {
        "key": "'Bad Key' is not a key: 1 to 64 lower-case letters, digits, '_', '.' or '-', "
        "starting with a letter or digit",
        "signing_secret": "must not be empty (leave the field out for none)",
        "rate_limit": "'lots' is not a rate limit: N/s, N/m or N/h with N from 1 to 1000000, "
        "such as 50/s",
    }
