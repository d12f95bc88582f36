"""Scaled mode, as deployed: two `beacon worker` processes (one for notifications alone,
`--queues notify`) on PostgreSQL and a `redis-server` of the test's own, a SendGrid stand-in
that checks requests as SendGrid does and fails 30 % of them (429 with `Retry-After`, or
503). An incident reaches 10,000 email subscribers: each gets exactly one email, and the
same when Redis is stopped for 60 s in the middle of the fan-out and started again empty
(as after a restart without persistence)."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from engine import incidents, migrate
from engine.db import Store, create_store
from engine.security import new_token
from engine.settings import Settings
from engine.tables import deliveries, subscribers
from tests.conftest import need
from tests.standins import SendGrid
from tests.support import RedisServer, wait_for, worker

from .conftest import make_site

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.e2e]

SUBSCRIBERS = 10_000
OUTAGE = 60.0


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _unsettled(store: Store) -> int:
    """Deliveries still waiting to be sent or tried again."""
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(deliveries.c.status.in_(["pending", "sending"]))
            ).scalar_one()
        )


@pytest.mark.parametrize("outage", [False, True], ids=["redis-up", "redis-stopped-60s"])
def test_ten_thousand_subscribers_each_get_one_email_from_a_flaky_provider(
    tmp_path: Path, pg_url: str, redis_server: RedisServer, outage: bool
) -> None:
    # Each request takes a little while, as SendGrid's do, so that the fan-out's ten
    # requests are still going when Redis stops.
    with SendGrid(fail_rate=0.3, delay=0.3, keep_mails=False) as sendgrid, ExitStack() as stack:
        env = {
            "BEACON_DATABASE_URL": pg_url,
            "BEACON_REDIS_URL": redis_server.url,
            "BEACON_REDIS_PREFIX": f"fanout-{secrets.token_hex(4)}:",
            "BEACON_SECRET_KEY": secrets.token_hex(24),
            "BEACON_BASE_URL": "http://status.test",
            "BEACON_SENDGRID_API_KEY": "SG.test",
            "BEACON_SENDGRID_API_URL": sendgrid.url,
            "BEACON_EMAIL_FROM": "status@acme.test",
        }
        data = tmp_path / "data"
        store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data), **env}))
        stack.callback(store.dispose)
        migrate.upgrade(store)
        site = make_site(SimpleNamespace(store=store))  # type: ignore[arg-type]
        with store.begin() as conn:
            conn.execute(
                subscribers.insert(),
                [
                    {
                        "page_id": site.page_id,
                        "channel": "email",
                        "address": f"user{n}@example.com",
                        "confirmed": True,
                        "link_selector": new_token(16),
                    }
                    for n in range(SUBSCRIBERS)
                ],
            )
        # Notifications on a worker of their own, the rest on another (docs/operations.md).
        for index, queues in enumerate(["notify", "evaluate,render,default"]):
            log = tmp_path / f"worker-{index}.log"
            stack.enter_context(worker(data, env, log, "--queues", queues))
        with store.begin() as conn:
            incidents.create(
                conn,
                team_id=site.team_id,
                title="API errors",
                message="We are investigating.",
                impacts={site.service_ids["api"]: "major_outage"},
            )
        if outage:
            wait_for(lambda: sendgrid.accepted, 60, "the first emails at SendGrid")
            redis_server.stop()
            stopped_at = sum(sendgrid.accepted.values())
            time.sleep(OUTAGE)
            redis_server.start()  # empty: the queued jobs are gone
            assert stopped_at < SUBSCRIBERS, "the fan-out was over before Redis stopped"
        wait_for(
            lambda: len(sendgrid.accepted) == SUBSCRIBERS and not _unsettled(store),
            150,
            "every subscriber's email, retries included",
            poll=1,
        )
        time.sleep(2)  # a duplicate on its way would arrive now
        with store.read() as conn:
            states = dict(
                conn.execute(
                    sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
                ).all()
            )
    assert sendgrid.failed > 0
    assert set(sendgrid.accepted.values()) == {1}
    assert sum(sendgrid.accepted.values()) == SUBSCRIBERS
    assert states == {"sent": SUBSCRIBERS}
