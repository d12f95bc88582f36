"""The per-source intake rate limit, on the real Redis and on the embedded fakeredis.

Every test passes its own `now`, so the outcome never depends on when the test runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from engine.sources import RateDecision, RateLimit, parse_rate_limit, take_rate
from tests.conftest import REDIS_URL

#: A time just before a minute boundary: a fixed 60-second window ends at T0 + 0.5.
T0 = 1_800_000_000 - 0.5


@dataclass
class Limiter:
    """Takes against one source's limit through one Redis client (one "process")."""

    client: Any
    prefix: str
    limit: RateLimit
    source_id: int = 7

    def take(self, count: int, now: float) -> RateDecision:
        return take_rate(self.client, self.prefix, self.source_id, self.limit, count, now)

    def passed(self, count: int, now: float) -> int:
        """How many of `count` single-event takes at `now` were allowed."""
        return sum(self.take(1, now).allowed for _ in range(count))


Clients = Callable[[str], Limiter]


@pytest.fixture(params=["redis", "fakeredis"])
def limiters(request: pytest.FixtureRequest) -> Iterator[Clients]:
    """Builds limiters that share one Redis: the real server, or one embedded fakeredis
    server (as `beacon serve` runs it in embedded mode)."""
    made: list[Any] = []
    if request.param == "redis":
        import redis

        prefix = request.getfixturevalue("redis_prefix")

        def client() -> Any:
            made.append(redis.Redis.from_url(REDIS_URL))
            return made[-1]
    else:
        import fakeredis

        prefix = "test:"
        server = fakeredis.FakeServer()

        def client() -> Any:
            made.append(fakeredis.FakeRedis(server=server))
            return made[-1]

    yield lambda text: Limiter(client(), prefix, parse_rate_limit(text))
    for each in made:
        each.close()


def test_a_burst_across_a_window_edge_passes_no_more_than_the_limit(limiters: Clients) -> None:
    limiter = limiters("10/m")
    before_edge = limiter.passed(10, T0)
    after_edge = limiter.passed(10, T0 + 1)
    assert (before_edge, after_edge) == (10, 0)


def test_events_at_the_limit_rate_pass_and_faster_ones_are_refused(limiters: Clients) -> None:
    limiter = limiters("10/s")  # one event per 100 ms once the burst of 10 is used
    assert limiter.passed(10, T0) == 10
    for step in range(1, 51):
        at = T0 + step * 0.1
        assert not limiter.take(1, at - 0.001).allowed, f"1 ms early at step {step}"
        assert limiter.take(1, at).allowed, f"on time at step {step}"


def test_a_refused_take_consumes_nothing(limiters: Clients) -> None:
    limiter = limiters("3/h")  # one event per 1200 s
    assert limiter.passed(3, T0) == 3
    for _ in range(20):
        assert not limiter.take(1, T0 + 600).allowed
    assert not limiter.take(2, T0 + 1200).allowed
    assert limiter.take(1, T0 + 1200).allowed


def test_a_take_of_several_events_is_all_or_nothing(limiters: Clients) -> None:
    limiter = limiters("5/m")
    assert limiter.take(3, T0).allowed
    assert not limiter.take(3, T0).allowed
    assert limiter.take(2, T0).allowed
    assert not limiter.take(1, T0).allowed


def test_retry_after_is_the_exact_wait_in_whole_seconds(limiters: Clients) -> None:
    limiter = limiters("10/m")  # one event per 6 s
    assert limiter.take(10, T0).allowed
    assert limiter.take(1, T0) == RateDecision(False, 6)
    assert limiter.take(3, T0) == RateDecision(False, 18)
    assert limiter.take(1, T0 + 5.5) == RateDecision(False, 1)  # 0.5 s rounds up
    assert limiter.take(1, T0 + 5.999) == RateDecision(False, 1)
    assert limiter.take(1, T0 + 6).allowed


def test_retry_after_rounds_an_uneven_interval_up_and_is_then_enough(limiters: Clients) -> None:
    limiter = limiters("7/m")  # one event per 8.571... s
    assert limiter.take(7, T0).allowed
    refused = limiter.take(1, T0)
    assert refused == RateDecision(False, 9)
    assert not limiter.take(1, T0 + 8.5).allowed
    assert limiter.take(1, T0 + 8.572).allowed


def test_a_take_larger_than_the_limit_is_refused_with_the_wait_until_the_bucket_is_full(
    limiters: Clients,
) -> None:
    limiter = limiters("10/m")
    assert limiter.take(11, T0) == RateDecision(False, 1)  # full now; it can never fit
    assert limiter.take(4, T0).allowed
    assert limiter.take(11, T0) == RateDecision(False, 24)
    assert limiter.take(6, T0).allowed  # the refused takes consumed nothing


def test_two_clients_share_one_budget(limiters: Clients) -> None:
    one, two = limiters("4/m"), limiters("4/m")
    assert one.client is not two.client
    taken = [client.take(1, T0).allowed for client in (one, two, one, two, one, two)]
    assert taken == [True, True, True, True, False, False]
    assert two.take(1, T0 + 15).allowed
    assert not one.take(1, T0 + 15).allowed


def test_each_source_has_a_budget_of_its_own(limiters: Clients) -> None:
    one, other = limiters("1/h"), limiters("1/h")
    other.source_id = 8
    assert one.take(1, T0).allowed
    assert other.take(1, T0).allowed
    assert not one.take(1, T0).allowed


def test_a_process_whose_clock_is_behind_never_refills_the_bucket(limiters: Clients) -> None:
    ahead, behind = limiters("2/m"), limiters("2/m")
    assert ahead.passed(2, T0 + 30) == 2
    assert not behind.take(1, T0).allowed
    assert behind.take(1, T0) == RateDecision(False, 60)  # 30 s to T0 + 30, then 30 s more


def test_a_changed_limit_starts_from_a_full_bucket(limiters: Clients) -> None:
    limiter = limiters("1/h")
    assert limiter.take(1, T0).allowed
    limiter.limit = parse_rate_limit("5/s")
    assert limiter.passed(6, T0) == 5


def test_a_full_bucket_leaves_no_key_behind(limiters: Clients) -> None:
    limiter = limiters("10/s")
    assert limiter.take(5, T0).allowed
    [key] = limiter.client.keys(f"{limiter.prefix}*")
    assert 0 < limiter.client.pttl(key) <= 2000


def test_no_events_are_always_allowed(limiters: Clients) -> None:
    limiter = limiters("1/h")
    assert limiter.take(1, T0).allowed
    assert limiter.take(0, T0) == RateDecision(True)
