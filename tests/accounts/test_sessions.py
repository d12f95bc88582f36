"""Server-side sessions: what ends them, what an old cookie is worth, and the cookie's flags."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import accounts, sessions
from engine.runtime import Runtime
from engine.settings import Lifetimes, Settings
from engine.tables import sessions as session_rows
from engine.tables import status_pages, users, utcnow
from pages.app import create_app
from tests import factories

from .conftest import BASE_URL, PASSWORD, make_user, sign_in, signed_in


def _replay(rt: Runtime, cookie: str) -> TestClient:
    """A fresh browser holding nothing but an old `beacon_session` cookie."""
    other = TestClient(create_app(rt), base_url=BASE_URL)
    other.cookies.set("beacon_session", cookie)
    return other


def _session_count(rt: Runtime) -> int:
    with rt.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(session_rows)).scalar_one())


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(
    rt: Runtime, client: TestClient
) -> None:
    make_user(rt, "ana@acme.test")
    assert sign_in(client, "ana@acme.test").status_code == 303
    cookie = client.cookies["beacon_session"]
    assert signed_in(_replay(rt, cookie))
    page = client.get("/login").text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert not signed_in(client)
    assert not signed_in(_replay(rt, cookie))  # the stolen copy died with the session
    assert _session_count(rt) == 0


def test_sign_out_everywhere_ends_every_session_of_the_user(
    rt: Runtime, client: TestClient
) -> None:
    make_user(rt, "ana@acme.test")
    make_user(rt, "bo@acme.test")
    with (
        TestClient(create_app(rt), base_url=BASE_URL) as laptop,
        TestClient(create_app(rt), base_url=BASE_URL) as colleague,
    ):
        sign_in(client, "ana@acme.test")
        sign_in(laptop, "ana@acme.test")
        sign_in(colleague, "bo@acme.test")
        page = client.get("/login").text
        assert 'name="everywhere"' in page
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        client.post("/logout", data={"csrf": csrf, "everywhere": "1"})
        assert not signed_in(client) and not signed_in(laptop)
        assert signed_in(colleague)


def test_a_password_change_ends_the_users_sessions(rt: Runtime, client: TestClient) -> None:
    user_id = make_user(rt, "ana@acme.test")
    sign_in(client, "ana@acme.test")
    assert signed_in(client)
    with rt.store.begin() as conn:
        accounts.set_password(conn, user_id, "a brand new passphrase")
    assert not signed_in(client)
    assert sign_in(client, "ana@acme.test").status_code == 401
    assert sign_in(client, "ana@acme.test", "a brand new passphrase").status_code == 303


def test_the_admin_api_password_change_and_deactivation_end_sessions(
    rt: Runtime, client: TestClient
) -> None:
    from engine.accounts import create_api_key

    admin = {"Authorization": f"Bearer {create_api_key(rt.store, name='ops', admin=True)}"}
    user_id = make_user(rt, "ana@acme.test")
    with TestClient(create_app(rt), base_url=BASE_URL) as api:
        sign_in(client, "ana@acme.test")
        changed = api.patch(
            f"/api/v1/users/{user_id}", json={"password": "another passphrase"}, headers=admin
        )
        assert changed.status_code == 200
        assert not signed_in(client)
        sign_in(client, "ana@acme.test", "another passphrase")
        assert signed_in(client)
        assert (
            api.patch(f"/api/v1/users/{user_id}", json={"active": False}, headers=admin).status_code
            == 200
        )
        assert not signed_in(client)
        assert sign_in(client, "ana@acme.test", "another passphrase").status_code == 401


def test_an_old_cookie_names_nobody_after_users_are_deleted_and_created_again(
    rt: Runtime, client: TestClient
) -> None:
    first = make_user(rt, "ana@acme.test", role="admin")
    sign_in(client, "ana@acme.test")
    cookie = client.cookies["beacon_session"]
    with rt.store.begin() as conn:
        conn.execute(users.delete().where(users.c.id == first))
    # SQLite hands out the deleted row's id again (max(rowid) + 1) unless told otherwise.
    again = make_user(rt, "eve@evil.test", role="admin")
    old = _replay(rt, cookie)
    assert not signed_in(old)
    assert old.get("/api/v1/users").status_code == 401
    assert _session_count(rt) == 0
    assert again >= first


def test_a_session_ends_when_idle_and_at_its_absolute_expiry(rt: Runtime) -> None:
    user_id = make_user(rt, "ana@acme.test")
    life = Lifetimes(idle=timedelta(hours=1), absolute=timedelta(hours=5))
    start = utcnow()
    with rt.store.begin() as conn:
        token = sessions.start(conn, user_id, life, now=start)
    at = start
    for _ in range(5):  # active every 50 minutes: never idle ...
        at += timedelta(minutes=50)
        assert sessions.user_for(rt.store, token, life, now=at) == user_id
    # ... but over after 5 hours in all, however active
    assert sessions.user_for(rt.store, token, life, now=start + timedelta(hours=5)) is None
    with rt.store.begin() as conn:
        idle = sessions.start(conn, user_id, life, now=start)
    assert sessions.user_for(rt.store, idle, life, now=start + timedelta(minutes=61)) is None


def test_signing_in_makes_a_new_session_and_ends_the_one_before(
    rt: Runtime, client: TestClient
) -> None:
    make_user(rt, "ana@acme.test")
    sign_in(client, "ana@acme.test")
    before = client.cookies["beacon_session"]
    sign_in(client, "ana@acme.test")
    assert client.cookies["beacon_session"] != before
    assert _session_count(rt) == 1
    assert not signed_in(_replay(rt, before))


def test_the_cookie_holds_a_random_token_and_the_store_only_its_hash(
    rt: Runtime, client: TestClient
) -> None:
    user_id = make_user(rt, "ana@acme.test")
    sign_in(client, "ana@acme.test")
    with rt.store.read() as conn:
        (row,) = conn.execute(sa.select(session_rows)).all()
    assert row.user_id == user_id
    token = rt.settings.secret_key.get_secret_value()  # the cookie is signed with it
    from itsdangerous import URLSafeTimedSerializer

    data = URLSafeTimedSerializer(token, salt="beacon.session").loads(
        client.cookies["beacon_session"]
    )
    assert set(data) == {"sid", "csrf", "host"} and str(user_id) != data["sid"]
    assert data["host"] == "testserver"  # the host it was signed in on, and only good there
    assert row.id == hashlib.sha256(data["sid"].encode()).hexdigest()


def test_a_forged_or_foreign_cookie_is_anonymous(rt: Runtime) -> None:
    make_user(rt, "ana@acme.test")
    assert not signed_in(_replay(rt, secrets.token_urlsafe(40)))
    from itsdangerous import URLSafeTimedSerializer

    other_key = URLSafeTimedSerializer("another installation's key" * 2, salt="beacon.session")
    assert not signed_in(_replay(rt, other_key.dumps({"sid": "x", "user_id": 1})))


def test_passwords_are_stored_as_argon2id_and_pbkdf2_hashes_upgraded_at_sign_in(
    rt: Runtime, client: TestClient
) -> None:
    user_id = make_user(rt, "ana@acme.test")
    with rt.store.read() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    # A hash as Beacon wrote them before argon2id: PBKDF2-SHA256, 240k iterations.
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 240_000)
    legacy = f"pbkdf2_sha256$240000${salt.hex()}${digest.hex()}"
    with rt.store.begin() as conn:
        conn.execute(users.update().where(users.c.id == user_id).values(password_hash=legacy))
    assert sign_in(client, "ana@acme.test", "wrong password").status_code == 401
    with rt.store.read() as conn:
        assert conn.execute(sa.select(users.c.password_hash)).scalar_one() == legacy
    assert sign_in(client, "ana@acme.test").status_code == 303
    with rt.store.read() as conn:
        upgraded = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert upgraded.startswith("$argon2id$")
    assert signed_in(client)  # upgrading the hash is no password change: the session stays
    client.cookies.clear()
    assert sign_in(client, "ana@acme.test").status_code == 303


def _cookie_flags(response: object) -> set[str]:
    (header,) = [
        v
        for k, v in response.headers.multi_items()
        if k == "set-cookie"  # type: ignore[attr-defined]
    ]
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def test_the_cookie_is_httponly_lax_and_secure_over_https_through_a_trusted_proxy(
    tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> None:
    env = {
        "BEACON_DATA_DIR": str(tmp_path / "data"),
        "BEACON_TRUSTED_PROXIES": "10.0.0.0/8",
    }
    rt = make_runtime(Settings.from_env(env))
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    app = create_app(rt)
    with TestClient(app, client=("10.1.2.3", 4000)) as behind_proxy:
        flags = _cookie_flags(behind_proxy.get("/login", headers=https))
        assert flags == {"path", "max-age", "httponly", "samesite", "secure"}
        plain = _cookie_flags(behind_proxy.get("/login"))  # the proxy says plain http
        assert "secure" not in plain and {"httponly", "samesite"} <= plain
    with TestClient(app, client=("203.0.113.9", 4000)) as direct:
        # Not a trusted proxy: its X-Forwarded-Proto is not believed.
        assert "secure" not in _cookie_flags(direct.get("/login", headers=https))
    with TestClient(app, base_url="https://status.test", client=("203.0.113.9", 1)) as tls:
        assert "secure" in _cookie_flags(tls.get("/login"))
    lax = TestClient(app).get("/login").headers["set-cookie"]
    assert "SameSite=Lax" in lax


def test_a_session_made_on_a_custom_domain_works_only_there(rt: Runtime) -> None:
    """A custom domain's DNS is its owner's, a team's: they can point it at a server of
    their own at any time, which then receives the session cookies browsers signed in there
    (a private page's members, admins). Such a cookie replayed on Beacon's own host (or
    another page's) must be anonymous, not its user, who may be an admin."""
    make_user(rt, "root@acme.test", role="admin")
    with rt.store.begin() as conn:
        team = factories.team(conn, "evil")
        page = factories.page(conn, team, "evil", type="private")
        conn.execute(
            status_pages.update()
            .where(status_pages.c.id == page)
            .values(custom_domain="status.evil.test", domain_verified_at=utcnow())
        )
    with TestClient(create_app(rt), base_url="https://status.evil.test") as there:
        assert sign_in(there, "root@acme.test").status_code == 303
        assert signed_in(there)
        assert there.get("/", follow_redirects=False).status_code == 200
        cookie = there.cookies["beacon_session"]
    own = _replay(rt, cookie)
    assert not signed_in(own)
    assert own.get("/api/v1/teams").status_code == 401
    # Signing in on Beacon's own host still works, and its session is good there.
    assert sign_in(own, "root@acme.test").status_code == 303
    assert own.get("/api/v1/teams").status_code == 200
