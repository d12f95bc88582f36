"""Sign-in for private pages: the form, CSRF, `next`, generic errors and the failure limit."""

from __future__ import annotations

from starlette.testclient import TestClient

from engine.runtime import Runtime
from pages.login import safe_next

from .conftest import make_user, sign_in


def _csrf(client: TestClient) -> str:
    page = client.get("/login").text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_the_form_is_accessible_html_without_external_assets(client: TestClient) -> None:
    response = client.get("/login?next=/p/acme/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "private, no-store"
    body = response.text
    assert '<label for="email">' in body and '<label for="password">' in body
    assert 'autocomplete="current-password"' in body
    assert 'name="next" value="/p/acme/"' in body
    assert "<link" not in body and "src=" not in body  # no external assets


def test_signing_in_starts_a_session_and_goes_to_next(rt: Runtime, client: TestClient) -> None:
    make_user(rt, "ana@acme.test")
    response = sign_in(client, "Ana@Acme.test", next_path="/p/acme/history")
    assert response.status_code == 303
    assert response.headers["location"] == "/p/acme/history"
    assert "signed in as <strong>ana@acme.test</strong>" in client.get("/login").text


def test_a_wrong_password_gets_a_generic_error(rt: Runtime, client: TestClient) -> None:
    make_user(rt, "ana@acme.test")
    wrong = sign_in(client, "ana@acme.test", password="nope")
    unknown = sign_in(client, "nobody@acme.test")
    assert wrong.status_code == unknown.status_code == 401
    assert "The email or password is not right." in wrong.text
    assert "The email or password is not right." in unknown.text
    assert 'role="alert"' in wrong.text
    assert "Signed in" not in client.get("/login").text


def test_a_post_without_the_session_csrf_token_is_refused(rt: Runtime, client: TestClient) -> None:
    make_user(rt, "ana@acme.test")
    client.get("/login")
    response = client.post(
        "/login",
        data={"email": "ana@acme.test", "password": "correct horse battery staple", "csrf": "x"},
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert "expired" in response.text
    assert "Signed in" not in client.get("/login").text


def test_next_only_accepts_local_paths(rt: Runtime, client: TestClient) -> None:
    make_user(rt, "ana@acme.test")
    response = sign_in(client, "ana@acme.test", next_path="https://evil.example/")
    assert response.headers["location"] == "/"
    for bad in ("//evil.example", "/\\evil.example", "http:/x", "javascript:alert(1)", "/a\nb"):
        assert safe_next(bad) == "/", bad
    assert safe_next("/p/acme/?x=1#y") == "/p/acme/?x=1#y"


def test_failed_attempts_are_limited_per_email_and_address(rt: Runtime, client: TestClient) -> None:
    make_user(rt, "ana@acme.test")
    make_user(rt, "bo@acme.test")
    for _ in range(5):
        assert sign_in(client, "ana@acme.test", password="guess").status_code == 401
    limited = sign_in(client, "ana@acme.test")  # even the right password waits now
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert sign_in(client, "bo@acme.test").status_code == 303  # another email is not held


def test_signing_out_needs_the_token_and_ends_the_session(rt: Runtime, client: TestClient) -> None:
    make_user(rt, "ana@acme.test")
    sign_in(client, "ana@acme.test")
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 400
    assert "Signed in" in client.get("/login").text
    response = client.post("/logout", data={"csrf": _csrf(client)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert "Signed in" not in client.get("/login").text
