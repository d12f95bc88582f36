"""`beacon serve` on both servers: the page, its validators and the live stream."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from engine import migrate
from engine.db import create_store
from engine.settings import Settings
from tests import factories as factory
from tests.support import serve

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_serve_answers_the_page_from_its_cache(tmp_path: Path, server: str) -> None:
    data = tmp_path / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    with store.begin() as conn:
        factory.big_page(conn, datetime.now(UTC), services_count=4, incidents_count=1)
    store.dispose()
    with serve(data, "--server", server) as base, httpx.Client(base_url=base) as client:
        first = client.get("/p/acme/")
        assert first.status_code == 200 and "Service 3" in first.text
        again = client.get("/p/acme/", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert client.get("/p/acme/history").status_code == 200
        with client.stream("GET", "/p/acme/live") as live:
            assert live.headers["content-type"].startswith("text/event-stream")
            lines = live.iter_lines()
            assert next(lines) == "retry: 2000"
            assert next(lines) == ""
            assert next(lines).startswith("data: ")


@pytest.mark.postgres
@pytest.mark.redis
def test_scaled_mode_renders_in_the_worker_and_serves_from_redis(
    tmp_path: Path, pg_url: str, redis_prefix: str
) -> None:
    import time

    from engine.accounts import create_api_key
    from tests.conftest import REDIS_URL
    from tests.support import worker

    env = {
        "BEACON_DATABASE_URL": pg_url,
        "BEACON_REDIS_URL": REDIS_URL,
        "BEACON_REDIS_PREFIX": redis_prefix,
        "BEACON_SECRET_KEY": "scaled-test-secret-" + "k" * 32,
    }
    data = tmp_path / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data), **env}))
    migrate.upgrade(store)
    with store.begin() as conn:
        ids = factory.big_page(conn, datetime.now(UTC), services_count=3, incidents_count=0)
    key = create_api_key(store, name="scaled", admin=True)
    store.dispose()
    with (
        serve(data, env=env) as base,
        worker(data, env, tmp_path / "worker.log"),
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        first = client.get("/p/acme/")
        assert first.status_code == 200 and "All Systems Operational" in first.text
        target = ids["services"][1]  # type: ignore[index]
        answer = client.put(
            f"/api/v1/services/{target}/override",
            json={"status": "major_outage"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 200, answer.text
        # The worker process renders; the web process serves what it put in Redis.
        give_up = time.monotonic() + 30
        while "Partial System Outage" not in client.get("/p/acme/").text:
            assert time.monotonic() < give_up, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.1)
        assert client.get("/p/acme/").headers["etag"] != first.headers["etag"]
