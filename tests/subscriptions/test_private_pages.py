"""Private pages: only signed-in members subscribe, as channel `user`, and hear by email."""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from engine import incidents
from engine.runtime import Runtime
from tests.support import RecordingServer

from .conftest import (
    advance,
    drain,
    leave_team,
    make_site,
    make_user,
    open_incident,
    sent_json,
    sign_in,
    subscriber_rows,
)


def test_an_anonymous_visitor_is_sent_to_sign_in(rt: Runtime, client: TestClient) -> None:
    make_site(rt, slug="acme", team_key="acme", private=True)
    form = client.post(
        "/p/acme/subscribe", data={"address": "eve@example.com"}, follow_redirects=False
    )
    assert form.status_code == 303
    assert form.headers["location"] == "/login?next=/p/acme/"
    api = client.post("/p/acme/subscribe", json={"channel": "email", "address": "eve@example.com"})
    assert api.status_code == 401
    assert subscriber_rows(rt) == []


def test_a_signed_in_non_member_gets_404(rt: Runtime, client: TestClient) -> None:
    make_site(rt, slug="acme", team_key="acme", private=True)
    make_site(rt, slug="other", team_key="other")
    make_user(rt, "mallory@other.test", teams=("other",))
    sign_in(client, "mallory@other.test")
    assert client.post("/p/acme/subscribe", json={}).status_code == 404


def test_a_member_subscribes_as_a_user_at_once(rt: Runtime, client: TestClient) -> None:
    make_site(rt, slug="acme", team_key="acme", private=True)
    user_id = make_user(rt, "ana@acme.test", teams=("acme",))
    sign_in(client, "ana@acme.test")
    first = client.post("/p/acme/subscribe", json={"services": ["db"]})
    assert first.status_code == 201
    assert first.json()["channel"] == "user" and first.json()["address"] == "ana@acme.test"
    assert "unsubscribe_url" in first.json()
    (row,) = subscriber_rows(rt)
    assert row.channel == "user" and row.user_id == user_id and row.confirmed
    assert row.services == ["db"]
    again = client.post("/p/acme/subscribe", json={"channel": "user", "services": ["api"]})
    assert again.status_code == 200 and again.json()["services"] == ["api"]
    assert [r.services for r in subscriber_rows(rt)] == [["api"]]


def test_a_member_cannot_subscribe_others_by_email_or_webhook(
    rt: Runtime, client: TestClient
) -> None:
    make_site(rt, slug="acme", team_key="acme", private=True)
    make_user(rt, "ana@acme.test", teams=("acme",))
    sign_in(client, "ana@acme.test")
    response = client.post(
        "/p/acme/subscribe", json={"channel": "email", "address": "leak@example.com"}
    )
    assert response.status_code == 422
    assert "private" in response.json()["error"]["message"]


def test_the_user_channel_is_not_for_public_pages(rt: Runtime, client: TestClient) -> None:
    make_site(rt)
    make_user(rt, "ana@acme.test", teams=("platform",))
    sign_in(client, "ana@acme.test")
    response = client.post("/p/acme/subscribe", json={"channel": "user", "address": "x"})
    assert response.status_code == 422


def test_members_hear_by_email_and_stop_when_they_leave_the_team(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    site = make_site(rt, slug="acme", team_key="acme", private=True)
    user_id = make_user(rt, "ana@acme.test", teams=("acme",))
    sign_in(client, "ana@acme.test")
    client.post("/p/acme/subscribe", json={})
    incident_id = open_incident(
        rt, site, "db", title="Database slow", message="Looking into it.", impact="degraded"
    )
    drain(rt)
    mails = [m for m in sent_json(server) if m["subject"] == "[Acme Status] Database slow"]
    assert [m["personalizations"][0]["to"][0]["email"] for m in mails] == ["ana@acme.test"]

    leave_team(rt, user_id)
    with rt.store.begin() as conn:
        incidents.resolve(conn, incident_id, message="Fixed.")
    before = len(server.requests)
    drain(rt)
    advance(rt, timedelta(seconds=31))  # the resolution waits for the coalescing window
    drain(rt)
    assert len(server.requests) == before
    (row,) = subscriber_rows(rt)
    assert "no longer a member" in (row.disabled_reason or "")


def test_a_member_subscribes_through_the_pages_form(rt: Runtime, client: TestClient) -> None:
    """The cached page sends members to the subscribe form, which carries their session's
    CSRF token; a post without it cannot use the session."""
    make_site(rt, slug="acme", team_key="acme", private=True)
    make_user(rt, "ana@acme.test", teams=("acme",))
    sign_in(client, "ana@acme.test")
    form = client.get("/p/acme/subscribe")
    assert form.status_code == 200
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    forged = client.post("/p/acme/subscribe", data={"channel": "user"}, follow_redirects=False)
    assert forged.status_code == 303 and forged.headers["location"].startswith("/login")
    assert subscriber_rows(rt) == []
    done = client.post("/p/acme/subscribe", data={"channel": "user", "csrf": csrf})
    assert done.status_code == 201, done.text
    assert [r.address for r in subscriber_rows(rt)] == ["ana@acme.test"]
