"""Cross-site requests cannot use a signed-in browser's session; every answer carries the
security headers (a CSP without inline script on HTML, nosniff, a referrer policy)."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine.accounts import create_api_key
from engine.runtime import Runtime
from engine.tables import api_keys

from .conftest import form_csrf, make_user, sign_in

KEYS = "/api/v1/api-keys"
NEW_KEY = {"name": "minted", "admin": True}


def _keys(rt: Runtime) -> list[str]:
    with rt.store.read() as conn:
        return list(conn.execute(sa.select(api_keys.c.name).order_by(api_keys.c.id)).scalars())


def _admin_signed_in(rt: Runtime, client: TestClient) -> None:
    make_user(rt, "root@acme.test", role="admin")
    assert sign_in(client, "root@acme.test").status_code == 303


def test_a_signed_in_json_call_from_another_origin_is_refused(
    rt: Runtime, client: TestClient
) -> None:
    _admin_signed_in(rt, client)
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {},  # neither Origin nor Sec-Fetch-Site: not provably ours
        {"Sec-Fetch-Site": "cross-site"},
    ):
        refused = client.post(KEYS, json=NEW_KEY, headers=headers)
        assert refused.status_code == 403, headers
        assert "cross-site request refused" in refused.json()["error"]["message"]
    assert _keys(rt) == []
    ours = client.post(KEYS, json=NEW_KEY, headers={"Origin": "http://testserver"})
    assert ours.status_code == 201
    fetched = client.post(KEYS, json={"name": "f"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert fetched.status_code == 422  # past the guard: a key needs a team or admin
    assert _keys(rt) == ["minted"]


def test_a_signed_in_form_or_text_post_without_the_token_is_refused(
    rt: Runtime, client: TestClient
) -> None:
    _admin_signed_in(rt, client)
    # What a foreign page's <form> can send: urlencoded, multipart or text/plain, never JSON.
    forged = [
        {"content": b"name=minted&admin=true", "ct": "application/x-www-form-urlencoded"},
        {"content": b'{"name": "minted", "admin": true}', "ct": "text/plain"},
        {
            "content": b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--b--\r\n',
            "ct": "multipart/form-data; boundary=b",
        },
    ]
    for attempt in forged:
        refused = client.post(
            KEYS,
            content=attempt["content"],
            headers={"Content-Type": str(attempt["ct"]), "Origin": "http://testserver"},
        )
        assert refused.status_code == 403, attempt["ct"]
    assert _keys(rt) == []
    # The session's own token (X-CSRF-Token) is what Beacon's pages send with a request.
    token = form_csrf(client)
    sent = client.post(KEYS, json=NEW_KEY, headers={"X-CSRF-Token": token})
    assert sent.status_code == 201
    assert client.post(KEYS, json=NEW_KEY, headers={"X-CSRF-Token": "forged"}).status_code == 403


def test_bearer_key_requests_are_not_affected(rt: Runtime, client: TestClient) -> None:
    _admin_signed_in(rt, client)  # a browser that also holds a session cookie
    key = create_api_key(rt.store, name="ci", admin=True)
    made = client.post(
        KEYS,
        json=NEW_KEY,
        headers={"Authorization": f"Bearer {key}", "Origin": "https://ci.example"},
    )
    assert made.status_code == 201


def test_an_anonymous_post_is_untouched_by_the_guard(rt: Runtime, client: TestClient) -> None:
    # No session: nothing to protect; the route answers as it would anyway.
    answer = client.post(KEYS, json=NEW_KEY, headers={"Origin": "https://x.example"})
    assert answer.status_code == 401


def test_html_answers_carry_a_csp_without_inline_script(rt: Runtime, client: TestClient) -> None:
    response = client.get("/login")
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in directives["script-src"]
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


def test_json_answers_carry_nosniff(rt: Runtime, client: TestClient) -> None:
    response = client.get("/api/v1/teams")
    assert response.status_code == 401
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in response.headers


def test_status_pages_load_their_script_from_a_file_under_the_csp(
    rt: Runtime, client: TestClient
) -> None:
    import re

    from tests.subscriptions.conftest import make_site

    make_site(rt)
    for attempt in ("cold: routed and rendered", "cached: the fast path"):
        page = client.get("/p/acme/")
        assert page.status_code == 200, attempt
        assert "script-src 'self';" in page.headers["content-security-policy"], attempt
        assert page.headers["x-content-type-options"] == "nosniff", attempt
        scripts = re.findall(r"<script([^>]*)>", page.text)
        # Only the script file and a JSON data block, which browsers never run.
        assert scripts == [' type="application/json" id="titles"', ' src="page.js"'], attempt
        assert not re.search(r"\son[a-z]+=", page.text), attempt  # no inline handlers
    script = client.get("/p/acme/page.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "EventSource" in script.text
