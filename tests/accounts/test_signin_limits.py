"""Sign-in limits: counted before the password is checked, so parallel guesses cannot slip
past them; per account and address, per account, and per address with a growing lockout."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from engine import migrate
from engine.accounts import create_user
from engine.db import create_store
from engine.runtime import Runtime
from engine.settings import Settings
from pages import signin_limits
from pages.signin_limits import SignInLimits
from tests.conftest import REDIS_URL
from tests.support import serve

from .conftest import PASSWORD

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`beacon serve` behind a "proxy" (the test) it trusts for the client's address."""
    data = tmp_path_factory.mktemp("limits") / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    for email in ("ana@acme.test", "bo@acme.test"):
        create_user(store, email, role="stakeholder", password=PASSWORD)
    store.dispose()
    with serve(data, env={"BEACON_TRUSTED_PROXIES": "127.0.0.1"}) as base:
        yield base


async def _attempts(base: str, email: str, password: str, addresses: list[str]) -> Counter[int]:
    """One sign-in attempt per address, all at once, sharing one browser session."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        form = (await client.get("/login")).text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]

        async def attempt(address: str) -> int:
            response = await client.post(
                "/login",
                data={"email": email, "password": password, "csrf": csrf},
                headers={"X-Forwarded-For": address},
            )
            return response.status_code

        return Counter(await asyncio.gather(*(attempt(a) for a in addresses)))


def test_fifty_parallel_guesses_from_one_address_get_five_checks(served: str) -> None:
    got = asyncio.run(_attempts(served, "ana@acme.test", "guess", ["203.0.113.7"] * 50))
    assert got == {401: signin_limits.PAIR_LIMIT, 429: 50 - signin_limits.PAIR_LIMIT}
    # Even the right password waits now, from that address ...
    assert asyncio.run(_attempts(served, "ana@acme.test", PASSWORD, ["203.0.113.7"])) == {429: 1}
    # ... but the account is not locked for its user elsewhere.
    assert asyncio.run(_attempts(served, "ana@acme.test", PASSWORD, ["203.0.113.99"])) == {303: 1}


def test_fifty_parallel_guesses_from_fifty_addresses_get_the_account_limit(served: str) -> None:
    # Bo signed in from his office before: that address stays his during the attack.
    assert asyncio.run(_attempts(served, "bo@acme.test", PASSWORD, ["198.51.100.1"])) == {303: 1}
    spread = [f"192.0.2.{n}" for n in range(1, 51)]
    got = asyncio.run(_attempts(served, "bo@acme.test", "guess", spread))
    limit = signin_limits.ACCOUNT_LIMIT
    assert got == {401: limit, 429: 50 - limit}
    assert asyncio.run(_attempts(served, "bo@acme.test", PASSWORD, ["192.0.2.200"])) == {429: 1}
    assert asyncio.run(_attempts(served, "bo@acme.test", PASSWORD, ["198.51.100.1"])) == {303: 1}


def test_an_address_guessing_across_accounts_is_locked_out_longer_each_time(
    redis_prefix: str,
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    limits = SignInLimits(client, redis_prefix)
    address = "203.0.113.50"
    answers = [limits.take(f"user{n}@acme.test", address) for n in range(40)]
    refused = [a for a in answers if a is not None]
    assert answers[: signin_limits.ADDRESS_LIMIT] == [None] * signin_limits.ADDRESS_LIMIT
    assert {a.limit for a in refused} == {"address"}
    assert refused[0].retry_after == signin_limits.LOCKOUT
    # The lockout runs out; the address goes on guessing and is locked out twice as long.
    client.delete(*client.keys(f"{redis_prefix}beacon:signin:lock:*"))
    again = limits.take("user99@acme.test", address)
    assert again is not None and again.retry_after == 2 * signin_limits.LOCKOUT
    # Another address is not held by any of it.
    assert limits.take("user1@acme.test", "203.0.113.51") is None
    client.close()


def test_a_successful_sign_in_gives_its_attempt_back(redis_prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    limits = SignInLimits(client, redis_prefix)
    for _ in range(signin_limits.PAIR_LIMIT * 3):  # a user signing in many times a day
        assert limits.take("ana@acme.test", "203.0.113.1") is None
        limits.succeeded("ana@acme.test", "203.0.113.1")
    client.close()


def test_without_redis_sign_in_is_refused_for_now_not_unlimited(
    tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> None:
    from starlette.testclient import TestClient

    from pages.app import create_app
    from tests.conftest import free_port

    from .conftest import form_csrf, make_user

    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path / "data"),
            "BEACON_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nobody listens
            "BEACON_SECRET_KEY": "k" * 32,
        }
    )
    rt = make_runtime(settings)
    make_user(rt, "ana@acme.test")
    with TestClient(create_app(rt)) as client:
        answer = client.post(
            "/login",
            data={"email": "ana@acme.test", "password": PASSWORD, "csrf": form_csrf(client)},
        )
    assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
    assert "unavailable for a moment" in answer.text
