"""Rendering pages in workers: `pages.dirty` in, fresh documents in the page cache out.

Coalescing. A burst of changes to one page must cost one render, plus one more for the
changes that arrived while it ran, however many changes and jobs there were. RQ does not
de-duplicate job ids, so each page has three Redis keys (on the queues' connection, so it
works with many web processes and workers):

- `want`: a counter bumped by every change to the page (the version the cache should reach);
- `pending`: a flag held by whoever renders the page; a change that finds it set does
  nothing more, since the holder will look at `want` when it finishes;
- `last`: when the last render started.

The holder renders the version it read, then releases the flag only if `want` has not moved
(atomically, in Lua); otherwise it keeps the flag and renders again, no sooner than
`RENDER_INTERVAL` after the previous render began. That wait is a store deadline
(`page.render`), not a sleeping worker. The flag expires after `PENDING_TTL`, so a worker
that dies mid-render cannot freeze a page; requests render on a cold miss anyway.

On the hour. A page changes with time alone: today's uptime, the day its bars end on, the
"Past incidents" days. So every render leaves a deadline (`page.refresh`) for the next
whole hour of the page's time zone, which marks the page dirty like any change would; a
page nobody touches still turns to the new day at midnight.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import deadlines, outbox, pagedata, uptime
from engine.errors import NotFoundError
from engine.runtime import Runtime, current
from engine.status import PAGES_DIRTY
from engine.tables import (
    incident_services,
    incidents,
    maintenance_services,
    maintenance_windows,
    page_services,
    page_teams,
    status_pages,
    utcnow,
)

from . import documents, export
from .cache import REDIS_ERRORS, Document, Entry, for_runtime
from .live import end_streams

log = logging.getLogger(__name__)

#: The least time between two renders of one page (the trailing render of a burst waits).
RENDER_INTERVAL = 1.0
PENDING_TTL = 120
DEADLINE_KIND = "page.render"
REFRESH_KIND = "page.refresh"

_RELEASE = """
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
    redis.call('DEL', KEYS[2])
    return 1
end
return 0
"""


def _key(rt: Runtime, page_id: int, name: str) -> str:
    return f"{rt.queues.prefix}render:{page_id}:{name}"


# --- which pages a change touches ------------------------------------------------------------


def affected_pages(conn: Connection, payloads: Iterable[dict[str, Any]]) -> set[int]:
    """The ids of the pages that show anything named in `pages.dirty` payloads
    (`page_ids`, `service_ids`, `incident_ids`, `window_ids`)."""
    page_ids: set[int] = set()
    service_ids: set[int] = set()
    incident_ids: set[int] = set()
    window_ids: set[int] = set()
    for payload in payloads:
        page_ids.update(_ints(payload.get("page_ids")))
        service_ids.update(_ints(payload.get("service_ids")))
        incident_ids.update(_ints(payload.get("incident_ids")))
        window_ids.update(_ints(payload.get("window_ids")))
    for link, col, table in (
        (incident_services, "incident_id", incidents),
        (maintenance_services, "window_id", maintenance_windows),
    ):
        ids = incident_ids if table is incidents else window_ids
        if not ids:
            continue
        service_ids.update(
            conn.execute(sa.select(link.c.service_id).where(link.c[col].in_(ids))).scalars()
        )
        # A notice on no service shows on every page of its team.
        page_ids.update(
            conn.execute(
                sa.select(page_teams.c.page_id)
                .join(table, table.c.team_id == page_teams.c.team_id)
                .where(table.c.id.in_(ids))
                .where(~sa.exists().where(link.c[col] == table.c.id))
            ).scalars()
        )
    if service_ids:
        page_ids.update(
            conn.execute(
                sa.select(page_services.c.page_id).where(
                    page_services.c.service_id.in_(service_ids)
                )
            ).scalars()
        )
    return page_ids


def _ints(value: Any) -> list[int]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]


def warm(store: Any) -> int:
    """Mark every page dirty; `beacon serve` calls it at start, so the workers render the
    pages before visitors come, and a new release's templates replace what an older one
    left in a shared (Redis) cache. Returns how many pages."""
    with store.begin() as conn:
        ids = sorted(conn.execute(sa.select(status_pages.c.id)).scalars())
        if ids:
            outbox.emit(conn, PAGES_DIRTY, {"page_ids": ids})
    return len(ids)


# --- outbox handlers and the job -------------------------------------------------------------

#: The outbox kinds rendering handles (queue, "module:function"), for the dispatcher's
#: registry: `cli.wiring` adds them to the workers' own (`workers.dispatch.HANDLERS`).
HANDLERS: dict[str, tuple[str, str]] = {
    "pages.dirty": ("beacon-render", "pages.render:handle_dirty"),
    "deadline.page.render": ("beacon-render", "pages.render:handle_deadline"),
    "deadline.page.refresh": ("beacon-render", "pages.render:handle_refresh"),
}


def handle_dirty(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """`pages.dirty`: bump each affected page's wanted version and render the pages nobody
    is rendering yet (the first here, the others as jobs of their own)."""
    with rt.store.read() as conn:
        page_ids = sorted(affected_pages(conn, payloads))
    mine = [page_id for page_id in page_ids if mark_dirty(rt, page_id)]
    for page_id in mine[1:]:
        rt.queues.enqueue(
            "beacon-render", "pages.render.render_job", page_id, result_ttl=0, failure_ttl=86400
        )
    if mine:
        run_render(rt, mine[0])


def handle_refresh(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """`deadline.page.refresh`: the hour turned; render the page as if it had changed.

    The next refresh is left here, an hour on from the one that fired, rather than only by
    the render: a worker whose clock is a little behind the ticker's would otherwise
    compute the hour that just fired once more."""
    now = utcnow()
    ids = []
    for payload in payloads:
        page_id, due = payload.get("page_id"), payload.get("due_at")
        if not isinstance(page_id, int):
            continue
        ids.append(page_id)
        fired = datetime.fromisoformat(due) if isinstance(due, str) else now
        hours = max(1, math.ceil((now - fired) / timedelta(hours=1)))
        _schedule_refresh(rt, page_id, fired + timedelta(hours=hours))
    if ids:
        handle_dirty(rt, [{"page_ids": sorted(set(ids))}])


def handle_deadline(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """`deadline.page.render`: the trailing render of a burst, once the interval has passed."""
    for page_id in sorted({p["page_id"] for p in payloads if isinstance(p.get("page_id"), int)}):
        run_render(rt, page_id)


#: A failed render job tries again after this long (a store deadline: no outbox row is
#: left to retry it, and RQ's own delayed retries do not run in embedded mode).
RETRY_SECONDS = 5.0


def render_job(page_id: int) -> None:
    """RQ job: render page `page_id` (the caller holds its pending flag). Best-effort: a
    failure is logged and the render rescheduled, so the page cannot stay stale."""
    rt = current()
    try:
        run_render(rt, page_id)
    except Exception:
        log.exception("rendering page %s failed; trying again in %.0f s", page_id, RETRY_SECONDS)
        _schedule(rt, page_id, time.time() + RETRY_SECONDS)


def mark_dirty(rt: Runtime, page_id: int) -> bool:
    """Record that the page changed; true if the caller now holds the flag and must render."""
    r = rt.queues.connection
    r.incr(_key(rt, page_id, "want"))
    return bool(r.set(_key(rt, page_id, "pending"), "1", nx=True, ex=PENDING_TTL))


def run_render(rt: Runtime, page_id: int) -> None:
    """Render the page now, or schedule it for when `RENDER_INTERVAL` has passed; release
    the pending flag when the cache is at the wanted version."""
    r = rt.queues.connection
    pending = _key(rt, page_id, "pending")
    started = time.time()
    last = float(r.get(_key(rt, page_id, "last")) or 0)
    if last + RENDER_INTERVAL > started:
        r.expire(pending, PENDING_TTL)
        _schedule(rt, page_id, last + RENDER_INTERVAL)
        return
    r.set(_key(rt, page_id, "last"), repr(started), ex=PENDING_TTL)
    version = int(r.get(_key(rt, page_id, "want")) or 0)
    try:
        render_page(rt, page_id, version)
    except NotFoundError:
        # The page was deleted: it must stop being served from the cache (and the export).
        for_runtime(rt).drop_page(page_id, int(r.incr(_key(rt, page_id, "want"))))
        export.remove(rt, page_id, None)
        r.delete(pending)
        return
    except Exception:
        # Let the outbox retry: it re-marks the page dirty, takes the flag and renders.
        r.delete(pending, _key(rt, page_id, "last"))
        raise
    released = r.eval(_RELEASE, 2, _key(rt, page_id, "want"), pending, str(version))
    if not released:
        _schedule(rt, page_id, started + RENDER_INTERVAL)


def _schedule(rt: Runtime, page_id: int, at: float) -> None:
    with rt.store.begin() as conn:
        deadlines.schedule(
            conn,
            DEADLINE_KIND,
            f"page:{page_id}",
            datetime.fromtimestamp(at, UTC),
            {"page_id": page_id},
        )
    rt.nudge.set()


def snapshot(
    rt: Runtime, conn: Connection, page_id: int, now: datetime, days: int = uptime.DEFAULT_DAYS
) -> pagedata.PageSnapshot:
    """The page as of `now`, its links made from this deployment's addresses."""
    return pagedata.load_page(
        conn,
        page_id,
        now,
        base_url=rt.settings.base_url,
        pages_domain=rt.settings.pages_domain,
        days=days,
    )


def build_entry(rt: Runtime, page_id: int, version: int) -> Entry:
    """Every document of the page, rendered from a fresh snapshot of the store."""
    return _rendered(rt, page_id, version)[0]


def _rendered(rt: Runtime, page_id: int, version: int) -> tuple[Entry, pagedata.PageSnapshot]:
    now = utcnow()
    with rt.store.read() as conn:
        snap = snapshot(rt, conn, page_id, now)
    started = time.perf_counter()
    docs = {
        name: Document.make(body, ctype, now)
        for name, (body, ctype) in documents.render_all(snap).items()
    }
    log.debug("rendered page %s v%d in %.1f ms", page_id, version, _ms(started))
    entry = Entry(
        page_id=page_id,
        slug=snap.page.slug,
        version=version,
        public=snap.page.active and snap.page.type == "public",
        documents=docs,
    )
    return entry, snap


def render_page(rt: Runtime, page_id: int, version: int) -> Entry | None:
    """Render every document of the page into the page cache, and into the static export
    when one is configured (`pages.export`); returns what the cache holds then (None: the
    page was evicted meanwhile, with a newer version)."""
    entry, snap = _rendered(rt, page_id, version)
    stored = for_runtime(rt).put(entry)
    export.after_render(
        rt,
        entry,
        stored,
        snap.generated_at,
        (snap.page.logo_hash, snap.page.favicon_hash),
        snapshot=snap,
    )
    rt.queues.connection.incr(_key(rt, page_id, "renders"))
    _schedule_refresh(rt, page_id, next_hour(snap.generated_at, snap.tz))
    return stored


def next_hour(now: datetime, tz: tzinfo) -> datetime:
    """The next whole hour after `now` on the clocks of `tz` (zones with half-hour offsets
    turn their days at :30 UTC), in UTC."""
    local = now.astimezone(tz).replace(minute=0, second=0, microsecond=0)
    return local.astimezone(UTC) + timedelta(hours=1)


def _schedule_refresh(rt: Runtime, page_id: int, due: datetime) -> None:
    """Leave the page's on-the-hour deadline, unless one is already left for that time or
    later: a write only when the hour moved on (most renders follow changes within the
    same hour). Without Redis to remember it by, the deadline is written every time."""
    r = rt.queues.connection
    memo = _key(rt, page_id, "refresh")
    stamp = due.astimezone(UTC).isoformat()
    try:
        known = r.get(memo)
    except REDIS_ERRORS:
        known = None
    if known and datetime.fromisoformat(_text(known)) >= due:
        return
    with rt.store.begin() as conn:
        deadlines.schedule(conn, REFRESH_KIND, f"page:{page_id}", due, {"page_id": page_id})
    try:
        r.set(memo, stamp, ex=2 * 3600)
    except REDIS_ERRORS:
        pass  # the next render writes the deadline again: the same row, no harm


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def render_count(rt: Runtime, page_id: int) -> int:
    """How many times the page was rendered by workers and cold misses (for tests, metrics)."""
    return int(rt.queues.connection.get(_key(rt, page_id, "renders")) or 0)


def evict(rt: Runtime, page_id: int, slug: str) -> None:
    """End every cached copy of the page now (access to it ended: deactivated, made
    private, deleted, renamed): its cache entry becomes a tombstone with a version newer
    than any render under way, so none of them puts the page back, and the next request
    anywhere goes through the access check; its static export (`pages.export`) goes too.
    The caller has committed the change and marked the page dirty, whose render then
    replaces the tombstone. Open live-update streams of
    the page in this process end at once (other processes' watchers see the tombstone
    within `pages.live.POLL_SECONDS`), and reconnect through the access check.

    While Redis is away no tombstone can be written: this process's fallback copy is
    dropped, and other processes' fallbacks expire within `FALLBACK_SECONDS`."""
    cache = for_runtime(rt)
    try:
        version = int(rt.queues.connection.incr(_key(rt, page_id, "want")))
        cache.evict(page_id, slug, version)
    except REDIS_ERRORS as exc:
        log.warning("could not evict page %r from the shared cache: %s", slug, exc)
        cache.fallback.drop(slug)
    export.remove(rt, page_id, slug)
    end_streams(rt, slug)


#: Locks for cold renders, shared by slugs with the same hash: one lock per slug would grow
#: with every random slug a client asks for.
_COLD_LOCKS = tuple(threading.Lock() for _ in range(64))


def _single_flight(slug: str) -> threading.Lock:
    """The slug's lock: concurrent misses on a page wait for the first one's render instead
    of each rendering it (after a restart every open page's visitors arrive at once; during
    a Redis outage each process renders what it serves). A fixed set of locks: two pages
    that share one only wait for each other's render."""
    return _COLD_LOCKS[hash(slug) % len(_COLD_LOCKS)]


def cold_render(rt: Runtime, slug: str) -> Entry | None:
    """The request path's fallback on a cache miss: render the page by slug, or None.
    When Redis fails meanwhile, the page is rendered from the store all the same
    (`fallback_render`)."""
    with _single_flight(slug):
        try:
            cached = for_runtime(rt).get(slug)
            if cached is not None:
                return cached
            return _cold_render(rt, slug)
        except REDIS_ERRORS as exc:
            log.warning("page cache unavailable (%s); rendering %r from the store", exc, slug)
    return fallback_render(rt, slug)


def fallback_render(rt: Runtime, slug: str) -> Entry | None:
    """The page rendered from the store without the shared cache (Redis is away), kept
    in this process's `Fallback` for a few seconds; None when there is no such page."""
    fallback = for_runtime(rt).fallback
    with _single_flight(slug):
        found = fallback.get(slug)
        if found is not None:
            return found
        page_id = _page_id(rt, slug)
        if page_id is None:
            return None
        try:
            entry = build_entry(rt, page_id, 0)
        except NotFoundError:
            return None
        fallback.put(entry)
        return entry


def _page_id(rt: Runtime, slug: str) -> int | None:
    with rt.store.read() as conn:
        found = conn.execute(
            sa.select(status_pages.c.id).where(status_pages.c.slug == slug)
        ).scalar()
    return int(found) if found is not None else None


def _cold_render(rt: Runtime, slug: str) -> Entry | None:
    page_id = _page_id(rt, slug)
    if page_id is None:
        return None
    version = int(rt.queues.connection.get(_key(rt, page_id, "want")) or 0)
    try:
        return render_page(rt, page_id, version)
    except NotFoundError:
        return None


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000
