"""Tried as an attacker: the admin API's answers are one principal's view (subscribers'
addresses, a feed link or a key shown once), so no cache may keep them. A member's browser
calls the API with its session cookie, which a shared proxy does not treat as it treats
`Authorization`; an answer without Cache-Control may be stored heuristically."""

from __future__ import annotations

from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.runtime import Runtime
from pages.app import create_app

from .conftest import BASE_URL, make_user, sign_in

JSON_FROM_HERE = {"Origin": BASE_URL, "Content-Type": "application/json"}


def test_admin_api_answers_are_never_stored(rt: Runtime) -> None:
    app = create_app(rt)
    admin = {"Authorization": f"Bearer {create_api_key(rt.store, name='root', admin=True)}"}
    with TestClient(app, base_url=BASE_URL) as client:
        assert client.post("/api/v1/teams", json={"key": "acme"}, headers=admin).is_success
        svc = client.post(
            "/api/v1/services", json={"key": "api", "name": "API", "team": "acme"}, headers=admin
        ).json()
        page = client.post(
            "/api/v1/pages",
            json={
                "slug": "acme",
                "name": "Acme",
                "type": "private",
                "teams": ["acme"],
                "services": [svc["id"]],
                "active": True,
            },
            headers=admin,
        ).json()
        make_user(rt, "ann@example.test", role="responder", teams=("acme",))
        assert sign_in(client, "ann@example.test").status_code == 303
        answers = {
            "subscribers": client.get(
                f"/api/v1/pages/{page['id']}/subscribers", headers={"Origin": BASE_URL}
            ),
            "feed link": client.post(
                "/api/v1/feed-links", json={"page": "acme"}, headers=JSON_FROM_HERE
            ),
            "feed links": client.get("/api/v1/feed-links", headers={"Origin": BASE_URL}),
            "key": client.post(
                "/api/v1/api-keys", json={"name": "ci", "team": "acme"}, headers=admin
            ),
        }
    for what, answer in answers.items():
        assert answer.status_code in (200, 201), (what, answer.text)
        assert "no-store" in answer.headers.get("cache-control", ""), what
        assert "public" not in answer.headers.get("cache-control", ""), what
