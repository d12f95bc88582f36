"""The render pipeline: which pages a change touches, coalescing, and the page cache."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from cli import wiring
from engine import deadlines, outbox
from engine.db import Store
from engine.runtime import Runtime, install, uninstall
from engine.settings import Settings
from engine.tables import services, status_changes
from pages import cache, render
from tests import factories as factory
from tests.conftest import REDIS_URL
from workers.dispatch import dispatch_once

NOW = datetime.now(UTC)


def test_changes_resolve_to_the_pages_that_show_them(store: Store) -> None:
    with store.begin() as conn:
        team = factory.team(conn)
        other = factory.team(conn, "other")
        api = factory.service(conn, team, "api")
        db = factory.service(conn, team, "db")
        lone = factory.service(conn, other, "lone")
        one = factory.page(conn, team, "one")
        two = factory.page(conn, team, "two")
        three = factory.page(conn, other, "three")
        factory.add_service(conn, one, api, 0)
        factory.add_service(conn, two, db, 0)
        factory.add_service(conn, three, lone, 0)
        on_api = factory.incident(conn, team, "API", started_at=NOW, impacts={api: "degraded"})
        notice = factory.incident(conn, other, "Notice", started_at=NOW, impacts={})
        window = factory.maintenance(conn, team, "DB", starts_at=NOW, ends_at=NOW, service_ids=[db])
        found = {
            "service": render.affected_pages(conn, [{"service_ids": [db]}]),
            "incident": render.affected_pages(conn, [{"incident_ids": [on_api]}]),
            "notice": render.affected_pages(conn, [{"incident_ids": [notice]}]),
            "window": render.affected_pages(conn, [{"window_ids": [window]}]),
            "page": render.affected_pages(conn, [{"page_ids": [three]}, {"junk": 1}]),
            "bad": render.affected_pages(conn, [{"service_ids": "api"}]),
        }
    assert found == {
        "service": {two},
        "incident": {one},
        "notice": {three},
        "window": {two},
        "page": {three},
        "bad": set(),
    }


def test_a_burst_of_1000_changes_causes_at_most_two_renders(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The burst is written in about a second; on a busy machine it can take longer than
    # the 1 s render interval, so the interval is stretched to keep the claim about the
    # burst (one render, plus one for what arrived during it) independent of machine speed.
    monkeypatch.setattr(render, "RENDER_INTERVAL", 4.0)
    with rt.store.begin() as conn:
        ids = factory.big_page(conn, NOW, services_count=20, incidents_count=1)
    page_id = ids["page"]
    service_ids: list[int] = ids["services"]  # type: ignore[assignment]
    statuses = ["degraded", "partial_outage", "major_outage", "operational"]
    with TestClient(wiring.app(rt, background=True)) as client:
        # 1,000 changes in 20 commits spread over about a second, each change with its own
        # `pages.dirty` row, while the dispatcher and the workers run.
        started = time.perf_counter()
        for n in range(20):
            batch = [
                (service_ids[k % 20], statuses[(n * 50 + k) % 4] if n < 19 else "major_outage")
                for k in range(50)
            ]
            with rt.store.begin() as conn:
                conn.execute(
                    status_changes.insert(),
                    [
                        {"service_id": sid, "new_status": new, "cause_kind": "rule", "at": NOW}
                        for sid, new in batch
                    ],
                )
                for sid, new in dict(batch).items():
                    conn.execute(services.update().where(services.c.id == sid).values(status=new))
                outbox.emit_many(conn, "pages.dirty", [{"service_ids": [sid]} for sid, _ in batch])
            rt.nudge.set()
            time.sleep(0.02)
        print(f"1,000 changes written in {time.perf_counter() - started:.2f} s")
        settle(rt)
        renders = render.render_count(rt, page_id)  # type: ignore[arg-type]
        html = client.get("/p/acme/").text
    assert 1 <= renders <= 2
    # The last changes (major outage for every service) are what the page shows, on the
    # 20 services and their 5 groups.
    assert "Major System Outage" in html
    assert html.count(">Major Outage<") == 25


def settle(rt: Runtime, timeout: float = 30) -> None:
    """Wait until the outbox is done and no page render is due (a test helper, not timing)."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        with rt.store.read() as conn:
            # The on-the-hour refresh is always pending; a render due now is not.
            due = conn.execute(
                sa.select(sa.func.count())
                .select_from(deadlines.deadlines)
                .where(deadlines.deadlines.c.kind != render.REFRESH_KIND)
            ).scalar_one()
        if not due and not outbox.pending_count(rt.store):
            return
        time.sleep(0.05)
    raise AssertionError("the outbox did not drain")


def test_changes_during_a_render_cause_exactly_one_more(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(rt)
    with rt.store.begin() as conn:
        ids = factory.big_page(conn, NOW, services_count=2, incidents_count=0)
    page_id: int = ids["page"]  # type: ignore[assignment]
    assert render.mark_dirty(rt, page_id)
    # A second change while the first is being rendered: no new render now ...
    real = render.render_page

    def render_and_change(rt: Runtime, pid: int, version: int) -> cache.Entry:
        entry = real(rt, pid, version)
        assert not render.mark_dirty(rt, pid)
        return entry

    monkeypatch.setattr(render, "render_page", render_and_change)
    render.run_render(rt, page_id)
    monkeypatch.setattr(render, "render_page", real)
    assert render.render_count(rt, page_id) == 1
    # ... but a trailing render is due, once the interval has passed.
    with rt.store.read() as conn:
        (due,) = conn.execute(
            sa.select(deadlines.deadlines).where(deadlines.deadlines.c.kind != render.REFRESH_KIND)
        ).all()
    assert due.kind == render.DEADLINE_KIND and due.payload == {"page_id": page_id}
    monkeypatch.setattr(render, "RENDER_INTERVAL", 0.0)
    render.handle_deadline(rt, [due.payload, due.payload])
    assert render.render_count(rt, page_id) == 2
    assert for_page(rt, "acme").version == 2
    # Settled: the flag is free, so the next change renders at once.
    assert render.mark_dirty(rt, page_id)


def for_page(rt: Runtime, slug: str) -> cache.Entry:
    entry = cache.for_runtime(rt).get(slug)
    assert entry is not None
    return entry


def test_a_render_that_fails_frees_the_page_for_the_retry(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with rt.store.begin() as conn:
        ids = factory.big_page(conn, NOW, services_count=1, incidents_count=0)
    page_id: int = ids["page"]  # type: ignore[assignment]

    def broken(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(render, "render_page", broken)
    with pytest.raises(RuntimeError):
        render.handle_dirty(rt, [{"page_ids": [page_id]}])
    monkeypatch.undo()
    render.handle_dirty(rt, [{"page_ids": [page_id]}])
    assert render.render_count(rt, page_id) == 1


def test_the_redis_cache_is_shared_between_processes(
    tmp_path: object,
    redis_prefix: str,
    sqlite_store: Store,
    settings: Settings,
    make_runtime: Callable[..., Runtime],
) -> None:
    env = {
        "BEACON_DATA_DIR": str(settings.data_dir),
        "BEACON_REDIS_URL": REDIS_URL,
        "BEACON_SECRET_KEY": "test-secret-" + "k" * 32,
        "BEACON_REDIS_PREFIX": redis_prefix,
    }
    scaled = Settings.from_env(env)
    # `sqlite_store` has migrated the file both share.
    worker, web = make_runtime(scaled, upgrade=False), make_runtime(scaled, upgrade=False)
    with worker.store.begin() as conn:
        ids = factory.big_page(conn, NOW, services_count=2, incidents_count=0)
        conn.execute(services.update().values(status="major_outage"))
    render.handle_dirty(worker, [{"page_ids": [ids["page"]]}])
    entry = cache.for_runtime(web).get("acme")
    assert entry is not None and entry.public and entry.version == 1
    assert b"Major System Outage" in entry.documents["index.html"].body
    assert cache.for_runtime(web).get("acme") is entry  # memoised by version
    # An unchanged re-render keeps its validators.
    render.render_page(worker, ids["page"], 2)  # type: ignore[arg-type]
    again = cache.for_runtime(web).get("acme")
    assert again is not None and again.version == 2
    assert again.documents["index.html"].last_modified == (
        entry.documents["index.html"].last_modified
    )


def test_the_local_cache_keeps_the_newest_render_and_follows_renames(rt: Runtime) -> None:
    local = cache.LocalCache()
    doc = cache.Document.make(b"x", "text/html", NOW)
    local.put(cache.Entry(1, "acme", 3, True, {"index.html": doc}))
    assert local.version("acme") == 3
    # An older render never replaces a newer one.
    local.put(cache.Entry(1, "acme", 2, True, {"index.html": doc}))
    assert local.version("acme") == 3
    # A renamed page leaves its old slug.
    local.put(cache.Entry(1, "renamed", 4, True, {"index.html": doc}))
    assert local.get("acme") is None and local.version("renamed") == 4


def test_render_threads_do_not_trip_over_each_other(rt: Runtime) -> None:
    with rt.store.begin() as conn:
        ids = factory.big_page(conn, NOW, services_count=2, incidents_count=0)
    errors: list[BaseException] = []

    def go() -> None:
        try:
            render.handle_dirty(rt, [{"page_ids": [ids["page"]]}])
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 1 <= render.render_count(rt, ids["page"]) <= 4  # type: ignore[arg-type]
    uninstall()


def test_a_deleted_page_leaves_the_cache(rt: Runtime, client: TestClient) -> None:
    from engine.tables import status_pages

    with rt.store.begin() as conn:
        ids = factory.big_page(conn, NOW, services_count=1, incidents_count=0)
    assert client.get("/p/acme/").status_code == 200  # cached now
    with rt.store.begin() as conn:
        conn.execute(status_pages.delete().where(status_pages.c.id == ids["page"]))
    render.handle_dirty(rt, [{"page_ids": [ids["page"]]}])
    assert cache.for_runtime(rt).get("acme") is None
    assert client.get("/p/acme/").status_code == 404


def test_concurrent_cold_misses_render_once(rt: Runtime) -> None:
    with rt.store.begin() as conn:
        ids = factory.big_page(conn, NOW, services_count=3, incidents_count=0)
    results: list[cache.Entry | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(render.cold_render(rt, "acme")))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r is not None for r in results)
    assert render.render_count(rt, ids["page"]) == 1  # type: ignore[arg-type]


def test_live_streams_of_a_page_share_one_watcher(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis as redis_lib

    from engine.queue import Queues
    from pages import live

    queues = Queues(redis_lib.Redis.from_url(REDIS_URL), redis_prefix)
    shared = cache.RedisCache(queues)
    doc = cache.Document.make(b"x", "text/html", NOW)
    shared.put(cache.Entry(1, "acme", 1, True, {"index.html": doc}))
    asks: list[str] = []
    real = shared.aget

    async def counting(slug: str) -> cache.Entry | None:
        asks.append(slug)
        return await real(slug)

    monkeypatch.setattr(shared, "aget", counting)

    async def fifty_streams() -> list[bool]:
        hub = live.LiveHub(shared, per_page=100, per_client=100, poll=0.2)
        listeners = [hub.join("acme", f"10.0.0.{i}", 1, public=True) for i in range(50)]
        await asyncio.sleep(0.5)
        shared.put(cache.Entry(1, "acme", 2, True, {"index.html": doc}))
        told = await asyncio.gather(*(one.wait(2) for one in listeners))
        assert {one.version for one in listeners} == {2}
        for one in listeners:
            hub.leave(one)
        assert hub.count() == 0
        await queues.aclose()
        return list(told)

    assert all(asyncio.run(fifty_streams()))
    # One watcher asked Redis every 0.2 s for all fifty streams, not fifty times as often.
    assert 2 <= len(asks) <= 8
    queues.connection.close()


def test_a_failed_render_job_is_rescheduled(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install(rt)
    with rt.store.begin() as conn:
        ids = factory.big_page(conn, NOW, services_count=1, incidents_count=0)

    def broken(*_args: object) -> None:
        raise RuntimeError("database away")

    monkeypatch.setattr(render, "render_page", broken)
    render.render_job(ids["page"])  # type: ignore[arg-type]
    with rt.store.read() as conn:
        (due,) = conn.execute(sa.select(deadlines.deadlines)).all()
    assert due.payload == {"page_id": ids["page"]}
    assert "trying again" in caplog.text
    uninstall()


def test_warming_renders_every_page_before_its_first_visitor(rt: Runtime) -> None:
    with rt.store.begin() as conn:
        factory.big_page(conn, NOW, services_count=1, incidents_count=0)
        factory.page(conn, factory.team(conn, "second"), "second")
    assert render.warm(rt.store) == 2
    with TestClient(wiring.app(rt, background=True)):
        settle(rt)
        assert cache.for_runtime(rt).get("acme") is not None
        assert cache.for_runtime(rt).get("second") is not None


def test_a_page_nobody_changes_turns_to_the_new_day_on_the_hour(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: the bars, the uptime figure and the days of past incidents follow the
    clock: every render leaves a deadline for the next hour, which renders the page again."""
    install(rt)
    clock = [datetime(2026, 12, 7, 23, 40, 12, tzinfo=UTC)]
    monkeypatch.setattr(render, "utcnow", lambda: clock[0])
    monkeypatch.setattr(render, "RENDER_INTERVAL", 0.0)
    with rt.store.begin() as conn:
        ids = factory.big_page(conn, clock[0], services_count=1, incidents_count=0)
    page_id: int = ids["page"]  # type: ignore[assignment]
    render.handle_dirty(rt, [{"page_ids": [page_id]}])
    before = for_page(rt, "acme").documents["index.html"].body
    assert b'data-d0="2026-09-09"' in before and b"Dec 08, 2026" not in before
    with rt.store.read() as conn:
        due = deadlines.get(conn, render.REFRESH_KIND, f"page:{page_id}")
    assert due is not None and due.due_at == datetime(2026, 12, 8, tzinfo=UTC)

    # Nothing changes; the clock passes midnight and the dispatcher finds the deadline.
    clock[0] = datetime(2026, 12, 8, 0, 0, 1, tzinfo=UTC)
    assert deadlines.fire_due(rt.store, clock[0]) == 1
    assert dispatch_once(rt) == 1
    rt.queues.worker().work(burst=True, logging_level="WARNING")
    after = for_page(rt, "acme").documents["index.html"].body
    assert b'data-d0="2026-09-10"' in after
    assert after.index(b"Dec 08, 2026") < after.index(b"Dec 07, 2026")
    with rt.store.read() as conn:
        due = deadlines.get(conn, render.REFRESH_KIND, f"page:{page_id}")
    assert due is not None and due.due_at == datetime(2026, 12, 8, 1, tzinfo=UTC)
    uninstall()


def test_the_next_hour_follows_the_page_time_zone() -> None:
    from zoneinfo import ZoneInfo

    now = datetime(2026, 12, 7, 18, 10, tzinfo=UTC)
    assert render.next_hour(now, UTC) == datetime(2026, 12, 7, 19, tzinfo=UTC)
    # India is UTC+5:30: its midnight, and every hour of its clock, is at :30 UTC.
    kolkata = render.next_hour(now, ZoneInfo("Asia/Kolkata"))
    assert kolkata == datetime(2026, 12, 7, 18, 30, tzinfo=UTC)
