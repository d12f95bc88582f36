"""Single sign-on end to end: `beacon serve` and a real OpenID provider (panva's
oidc-provider on Node) on loopback; the browser's part is played by an HTTP client that
follows the redirects and fills in the provider's sign-in form."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
import sqlalchemy as sa

from engine import migrate
from engine.accounts import create_user
from engine.db import Store, create_store
from engine.settings import Settings
from engine.tables import team_members, teams, users
from tests.conftest import free_port, need
from tests.support import serve, stop, wait_http

pytestmark = [pytest.mark.e2e]

HERE = Path(__file__).parent / "oidc"
CLIENT_ID, CLIENT_SECRET = "beacon-test", "beacon-test-client-secret"


@dataclass
class Sso:
    beacon: str
    issuer: str
    store: Store
    accounts_file: Path

    def claims(self, accounts: dict[str, dict[str, object]]) -> None:
        self.accounts_file.write_text(json.dumps(accounts))


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sso]:
    need(shutil.which("node") is not None, "Node.js is not installed (apt-get install nodejs)")
    need(
        (HERE / "node_modules" / "oidc-provider").exists(),
        "oidc-provider is not installed (make tests/accounts/oidc/node_modules/.installed)",
    )
    tmp = tmp_path_factory.mktemp("oidc")
    beacon_port, issuer_port = free_port(), free_port()
    beacon, issuer = f"http://127.0.0.1:{beacon_port}", f"http://127.0.0.1:{issuer_port}"
    accounts_file = tmp / "accounts.json"
    accounts_file.write_text("{}")
    data = tmp / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    with store.begin() as conn:
        conn.execute(
            teams.insert(), [{"key": "acme", "private": True}, {"key": "globex", "private": False}]
        )
    env = {
        "BEACON_BASE_URL": beacon,
        "BEACON_OIDC_ISSUER": issuer,
        "BEACON_OIDC_CLIENT_ID": CLIENT_ID,
        "BEACON_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "BEACON_OIDC_NAME": "Acme SSO",
        "BEACON_OIDC_SCOPES": "openid email profile beacon",
        "BEACON_OIDC_ROLE_CLAIM": "beacon_role",
        "BEACON_OIDC_TEAMS_CLAIM": "beacon_teams",
    }
    provider = subprocess.Popen(
        [
            "node",
            str(HERE / "provider.mjs"),
            str(issuer_port),
            CLIENT_ID,
            CLIENT_SECRET,
            f"{beacon}/login/oidc/callback",
        ],
        env={"PATH": "/usr/bin:/bin", "OIDC_ACCOUNTS_FILE": str(accounts_file)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"{issuer}/.well-known/openid-configuration", timeout=30)
        with serve(data, env=env, port=beacon_port):
            yield Sso(beacon, issuer, store, accounts_file)
    finally:
        stop(provider)
        store.dispose()


def sign_in_with_sso(
    sso: Sso, client: httpx.Client, login: str, next_path: str = "/"
) -> httpx.Response:
    """The browser's round trip; returns Beacon's answer to the provider's redirect (the
    client keeps Beacon's cookie)."""
    response = client.get(f"{sso.beacon}/login/oidc", params={"next": next_path})
    assert response.status_code == 302, response.text
    for _ in range(10):  # provider: /auth -> /interaction/<uid> (the sign-in form)
        if response.status_code not in (302, 303):
            break
        response = client.get(urljoin(str(response.url), response.headers["location"]))
    form = re.search(r'action="([^"]+)"', response.text)
    assert form and 'name="login"' in response.text, response.text
    response = client.post(
        urljoin(str(response.url), form.group(1)),
        data={"prompt": "login", "login": login, "password": "anything"},
    )
    while response.status_code in (302, 303):
        target = urljoin(str(response.url), response.headers["location"])
        response = client.get(target)
        if target.startswith(f"{sso.beacon}/login/oidc/callback"):
            return response
    raise AssertionError(f"never came back to Beacon: {response.status_code} {response.text}")


def _user(sso: Sso, email: str) -> tuple[str, list[str]] | None:
    with sso.store.read() as conn:
        row = conn.execute(
            sa.select(users.c.id, users.c.role).where(users.c.email == email)
        ).first()
        if row is None:
            return None
        keys = conn.execute(
            sa.select(teams.c.key)
            .join(team_members, team_members.c.team_id == teams.c.id)
            .where(team_members.c.user_id == row.id)
            .order_by(teams.c.key)
        ).scalars()
        return str(row.role), list(keys)


def test_the_sign_in_page_offers_single_sign_on(sso: Sso) -> None:
    page = httpx.get(f"{sso.beacon}/login?next=/p/x/").text
    assert 'href="/login/oidc?next=/p/x/"' in page and "Sign in with Acme SSO" in page


def test_a_verified_email_signs_in_and_the_user_follows_the_claims(sso: Sso) -> None:
    sso.claims(
        {
            "ana": {
                "email": "Ana@Acme.test",
                "email_verified": True,
                "beacon_role": "responder",
                "beacon_teams": ["acme", "no-such-team"],
            }
        }
    )
    with httpx.Client(timeout=30) as client:
        answer = sign_in_with_sso(sso, client, "ana", next_path="/login")
        assert answer.status_code == 303
        signed_in = client.get(f"{sso.beacon}/login").text
    assert "signed in as <strong>ana@acme.test</strong>" in signed_in
    assert _user(sso, "ana@acme.test") == ("responder", ["acme"])
    # The provider moves her to another team and makes her a stakeholder: the next sign-in
    # follows.
    sso.claims(
        {
            "ana": {
                "email": "ana@acme.test",
                "email_verified": True,
                "beacon_role": ["stakeholder"],
                "beacon_teams": ["globex"],
            }
        }
    )
    with httpx.Client(timeout=30) as client:
        assert sign_in_with_sso(sso, client, "ana").status_code == 303
    assert _user(sso, "ana@acme.test") == ("stakeholder", ["globex"])


def test_an_existing_user_is_matched_by_email(sso: Sso) -> None:
    create_user(sso.store, "bo@acme.test", role="admin", teams=["acme"])
    sso.claims({"bo": {"email": "bo@acme.test", "email_verified": True}})  # no role claim
    with httpx.Client(timeout=30) as client:
        assert sign_in_with_sso(sso, client, "bo").status_code == 303
        admin_api = client.get(f"{sso.beacon}/api/v1/users").status_code
    assert admin_api == 200  # an admin's session
    assert _user(sso, "bo@acme.test") == ("admin", ["acme"])
    with sso.store.read() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).where(users.c.email == "bo@acme.test")).scalar()
            == 1
        )


def test_an_unverified_email_is_refused(sso: Sso) -> None:
    sso.claims({"eve": {"email": "bo@acme.test", "email_verified": False}})
    with httpx.Client(timeout=30) as client:
        answer = sign_in_with_sso(sso, client, "eve")
        assert answer.status_code == 403
        assert "did not confirm an email address" in answer.text
        assert "Signed in" not in client.get(f"{sso.beacon}/login").text


def test_a_forged_callback_is_refused(sso: Sso) -> None:
    with httpx.Client(timeout=30) as client:
        client.get(f"{sso.beacon}/login/oidc")  # a real state in the session ...
        forged = client.get(f"{sso.beacon}/login/oidc/callback", params={"code": "x", "state": "y"})
        assert forged.status_code == 400  # ... but not this one
        assert "Signed in" not in client.get(f"{sso.beacon}/login").text
