"""A web process's caches are bounded whatever clients ask: the page cache's per-process
memo of entries read from Redis keeps at most `MEMO_PAGES` pages, and asking for thousands
of pages that do not exist leaves no state behind per slug."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

from engine.queue import Queues
from engine.settings import Settings
from pages import cache as cache_module
from pages.cache import Document, Entry, RedisCache
from tests.conftest import REDIS_URL


def _entry(n: int) -> Entry:
    doc = Document.make(b"<html>" + b"x" * 2000 + b"</html>", "text/html", datetime.now(UTC))
    return Entry(n, f"page-{n}", 1, True, {"index.html": doc})


def test_the_redis_page_memo_keeps_at_most_memo_pages(redis_prefix: str, tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "MEMO_PAGES", 50)
    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path),
            "BEACON_REDIS_URL": REDIS_URL,
            "BEACON_REDIS_PREFIX": redis_prefix,
            "BEACON_SECRET_KEY": secrets.token_hex(32),
        }
    )
    queues = Queues.from_settings(settings)
    cache = RedisCache(queues)
    for n in range(200):
        cache.put(_entry(n))

    async def read_all() -> list[bool]:
        try:
            return [(await cache.aget(f"page-{n}")) is not None for n in range(200)]
        finally:
            await queues.aclose()

    assert all(asyncio.run(read_all()))
    assert len(cache._memo) == 50
    # The most recently read stay; a page read again is served from the memo.
    assert cache._memo.get("page-199") is not None and cache._memo.get("page-0") is None
    queues.connection.close()


def test_cold_render_locks_do_not_grow_with_the_slugs_clients_make_up():
    from pages import render

    locks = {id(render._single_flight(secrets.token_hex(8))) for _ in range(10_000)}
    assert len(locks) <= 64
    assert render._single_flight("acme") is render._single_flight("acme")
