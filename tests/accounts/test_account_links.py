"""Invitation and password-reset links: emailed through the email channel, single use,
expiring, and the reset form tells nobody who has an account."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import accounts
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import account_tokens, outbox, utcnow
from pages.app import create_app
from tests.subscriptions.conftest import drain, sent_json
from tests.support import RecordingServer
from workers.account_mail import send_account_email

from .conftest import BASE_URL, PASSWORD, form_csrf, make_user, sign_in, signed_in

NEW = "a passphrase of my own"


@pytest.fixture
def mail_rt(
    tmp_path: Path, server: RecordingServer, make_runtime: Callable[..., Runtime]
) -> Runtime:
    """A runtime whose email goes to SendGrid's stand-in on loopback."""
    env = {
        "BEACON_DATA_DIR": str(tmp_path / "data"),
        "BEACON_BASE_URL": BASE_URL,
        "BEACON_SENDGRID_API_KEY": "SG.test",
        "BEACON_SENDGRID_API_URL": server.url,
        "BEACON_EMAIL_FROM": "beacon@acme.test",
    }
    return make_runtime(Settings.from_env(env))


@pytest.fixture
def mail_client(mail_rt: Runtime) -> TestClient:
    with TestClient(create_app(mail_rt), base_url=BASE_URL) as client:
        yield client


def _link(server: RecordingServer) -> str:
    mails = sent_json(server)
    assert mails, "no email was sent"
    text = mails[-1]["content"][0]["value"]
    found = re.search(r"http://testserver(/account/\w+/[\w-]+)", text)
    assert found, text
    return found.group(1)


def _choose(client: TestClient, path: str, password: str, confirm: str | None = None) -> object:
    return client.post(
        path,
        data={
            "password": password,
            "confirm": confirm or password,
            "csrf": form_csrf(client),
        },
        follow_redirects=False,
    )


def test_an_invitation_link_sets_the_password_once_and_signs_in(
    mail_rt: Runtime, mail_client: TestClient, server: RecordingServer
) -> None:
    user_id = accounts.create_user(mail_rt.store, "new@acme.test", role="stakeholder")
    assert send_account_email(mail_rt.settings, mail_rt.store, user_id, accounts.INVITE)
    (mail,) = sent_json(server)
    assert mail["personalizations"][0]["to"][0]["email"] == "new@acme.test"
    assert mail["subject"] == "You are invited to Beacon"
    path = _link(server)
    assert path.startswith("/account/invite/")
    form = mail_client.get(path)
    assert form.status_code == 200 and "new@acme.test" in form.text
    assert _choose(mail_client, path, NEW).status_code == 303
    assert signed_in(mail_client)
    # Single use: the same link again is dead, and cannot set another password.
    mail_client.cookies.clear()
    assert mail_client.get(path).status_code == 410
    assert _choose(mail_client, path, "someone else's choice").status_code == 410
    assert sign_in(mail_client, "new@acme.test", NEW).status_code == 303
    with mail_rt.store.read() as conn:
        stored = conn.execute(sa.select(account_tokens.c.token_hash)).scalar_one()
    assert path.rsplit("/", 1)[1] not in stored  # only the hash is kept


def test_an_expired_link_does_nothing(
    mail_rt: Runtime, mail_client: TestClient, server: RecordingServer
) -> None:
    user_id = make_user(mail_rt, "ana@acme.test")
    send_account_email(mail_rt.settings, mail_rt.store, user_id, accounts.RESET)
    path = _link(server)
    with mail_rt.store.begin() as conn:
        conn.execute(account_tokens.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    assert mail_client.get(path).status_code == 410
    assert _choose(mail_client, path, NEW).status_code == 410
    assert sign_in(mail_client, "ana@acme.test", PASSWORD).status_code == 303


def test_a_reset_link_expires_within_an_hour_and_only_the_newest_works(
    mail_rt: Runtime, server: RecordingServer
) -> None:
    user_id = make_user(mail_rt, "ana@acme.test")
    with mail_rt.store.begin() as conn:
        first = accounts.issue_token(conn, user_id, accounts.RESET)
        second = accounts.issue_token(conn, user_id, accounts.RESET)
    later = utcnow() + timedelta(minutes=59)
    with mail_rt.store.read() as conn:
        assert accounts.peek_token(conn, first, accounts.RESET) is None
        assert accounts.peek_token(conn, second, accounts.RESET, now=later) is not None
        assert (
            accounts.peek_token(conn, second, accounts.RESET, now=later + timedelta(minutes=2))
            is None
        )
        assert accounts.peek_token(conn, second, accounts.INVITE) is None  # kinds do not mix


def test_spending_a_link_twice_at_once_succeeds_once(mail_rt: Runtime) -> None:
    import concurrent.futures

    user_id = make_user(mail_rt, "ana@acme.test")
    with mail_rt.store.begin() as conn:
        token = accounts.issue_token(conn, user_id, accounts.RESET)

    def spend(n: int) -> bool:
        with mail_rt.store.begin() as conn:
            return accounts.use_token(conn, token, accounts.RESET, f"{NEW} {n}") is not None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(spend, range(8)))
    assert results.count(True) == 1


def test_a_reset_ends_every_session_and_signs_in_anew(
    mail_rt: Runtime, mail_client: TestClient, server: RecordingServer
) -> None:
    make_user(mail_rt, "ana@acme.test")
    with TestClient(create_app(mail_rt), base_url=BASE_URL) as stolen:
        sign_in(stolen, "ana@acme.test")
        page = mail_client.get("/account/reset")
        assert page.status_code == 200
        answer = mail_client.post(
            "/account/reset",
            data={"email": "Ana@acme.test", "csrf": form_csrf(mail_client, "/account/reset")},
        )
        assert answer.status_code == 200 and "is on its way" in answer.text
        drain(mail_rt)
        path = _link(server)
        assert path.startswith("/account/reset/")
        assert _choose(mail_client, path, NEW, "a different one").status_code == 400
        assert _choose(mail_client, path, "short").status_code == 400
        assert _choose(mail_client, path, NEW).status_code == 303
        assert signed_in(mail_client) and not signed_in(stolen)


def test_the_reset_form_answers_alike_for_unknown_emails_and_sends_nothing(
    mail_rt: Runtime, mail_client: TestClient, server: RecordingServer
) -> None:
    make_user(mail_rt, "ana@acme.test")
    answers = []
    for email in ("ana@acme.test", "nobody@acme.test"):
        answer = mail_client.post(
            "/account/reset",
            data={"email": email, "csrf": form_csrf(mail_client, "/account/reset")},
        )
        answers.append((answer.status_code, answer.text.replace(email, "EMAIL")))
    assert answers[0] == answers[1]
    drain(mail_rt)
    assert [m["personalizations"][0]["to"][0]["email"] for m in sent_json(server)] == [
        "ana@acme.test"
    ]


def test_reset_requests_are_limited_per_email_without_saying_so(
    mail_rt: Runtime, mail_client: TestClient
) -> None:
    make_user(mail_rt, "ana@acme.test")
    for _ in range(5):
        answer = mail_client.post(
            "/account/reset",
            data={"email": "ana@acme.test", "csrf": form_csrf(mail_client, "/account/reset")},
        )
        assert answer.status_code == 200
    with mail_rt.store.read() as conn:
        queued = conn.execute(
            sa.select(sa.func.count()).where(outbox.c.kind == "accounts.email")
        ).scalar_one()
    assert queued == 3


def test_account_tokens_stay_out_of_the_access_log() -> None:
    from pages.errors import redact_path

    assert redact_path("/account/reset/abcDEF123-_x") == "/account/reset/<redacted>"
    assert redact_path("/account/invite/abcDEF123-_x") == "/account/invite/<redacted>"


def test_an_admin_invites_a_user_over_the_api(
    mail_rt: Runtime, mail_client: TestClient, server: RecordingServer
) -> None:
    admin = {
        "Authorization": f"Bearer {accounts.create_api_key(mail_rt.store, name='a', admin=True)}"
    }
    made = mail_client.post(
        "/api/v1/users", json={"email": "cy@acme.test", "role": "responder"}, headers=admin
    )
    assert made.status_code == 201
    invited = mail_client.post(f"/api/v1/users/{made.json()['id']}/invite", headers=admin)
    assert invited.status_code == 202
    team_key = {"Authorization": "Bearer nope"}
    assert (
        mail_client.post(f"/api/v1/users/{made.json()['id']}/invite", headers=team_key).status_code
        == 401
    )
    drain(mail_rt)
    path = _link(server)
    assert path.startswith("/account/invite/")
    assert _choose(mail_client, path, NEW).status_code == 303
    assert signed_in(mail_client)
