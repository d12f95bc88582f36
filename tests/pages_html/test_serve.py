"""`beacon serve` on both servers: the page, its validators and the live stream."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from engine import migrate
from engine.db import create_store
from engine.settings import Settings
from tests.support import serve

from . import factory

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
