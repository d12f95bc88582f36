"""The page cache: rendered documents of each page, served without touching the database.

Workers write every document of a page (HTML and JSON) after a change; web processes read
them. In embedded mode the cache is a dict in the process (workers are threads of the web
process); in scaled mode it lives in Redis, shared by every web process and worker, and
each web process keeps the last entry it read per page and revalidates it with one small
`HGET` of the page's cache version per request.

Entries are keyed by slug (the URL), so a request needs no lookup first. Each entry knows
whether it may be served to anyone (`public`: an active public page); private and
inactive pages go through the access check on the routed path.

Redis may fail. The event loop reads it only through the asyncio client, behind the
runtime's breaker (`engine.queue.Breaker`); when it does not answer, `aget` raises
`CacheUnavailable` and the request is served from `Fallback`: pages rendered from the
store in this process, kept a few seconds, so an outage does not become a render per
request.

When access to a page ends (deactivated, made private, deleted, renamed), `evict` writes
a *tombstone* in place of its entry, in the same request: every process's next read finds
no entry (and goes through the access check), and a render that began before the change,
with an older version, cannot put the page back.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Protocol

import redis

from engine.runtime import Runtime

from .state import of as pages_state

#: How long browsers and proxies may reuse a public page: short, so news shows quickly.
PUBLIC_CACHE_CONTROL = "public, max-age=5, stale-while-revalidate=25"
PRIVATE_CACHE_CONTROL = "private, no-store"
GZIP_MIN = 1024
COMPRESSIBLE = ("text/", "application/json", "application/rss", "application/atom", "image/svg")
#: While Redis is away, a page rendered from the store is served for this long in its
#: process before it is rendered again: what a visitor may lag behind, and how long an
#: access change made in another process (which cannot reach this one) may take here.
FALLBACK_SECONDS = 5.0
#: At most this many pages are kept rendered in a process while Redis is away.
FALLBACK_PAGES = 256
#: A tombstone outlives any render that began before it (RQ's job timeout is 300 s).
TOMBSTONE_SECONDS = 600
#: Pages whose last read entry a web process keeps (scaled mode), the least recently read
#: dropped first: each holds every document of its page.
MEMO_PAGES = 512
#: Failures of the shared cache: Redis's own, and the socket's.
REDIS_ERRORS = (redis.RedisError, OSError)


class CacheUnavailable(Exception):
    """The shared page cache (Redis) did not answer: serve from the store instead."""


@dataclass(frozen=True)
class Document:
    """One rendered document with its validators."""

    body: bytes
    content_type: str
    etag: str
    last_modified: str
    #: The body gzipped once at render time (text documents over 1 KB), else None.
    gzipped: bytes | None = None

    @classmethod
    def make(cls, body: bytes, content_type: str, at: datetime) -> Document:
        digest = hashlib.sha256(body).hexdigest()[:20]
        packed = None
        if len(body) > GZIP_MIN and content_type.startswith(COMPRESSIBLE):
            # mtime=0: the same bytes give the same gzip, so the variant's ETag stays honest.
            packed = gzip.compress(body, compresslevel=6, mtime=0)
        return cls(body, content_type, f'"{digest}"', http_date(at), packed)

    @property
    def gzip_etag(self) -> str:
        return gzip_etag(self.etag)


def gzip_etag(etag: str) -> str:
    """The gzip variant's ETag: a different representation, so a different tag."""
    return etag[:-1] + '-gz"'


@dataclass(frozen=True)
class Entry:
    """Every document of one page as of one render."""

    page_id: int
    slug: str
    version: int
    #: Served to anyone without an access check (active and public).
    public: bool
    documents: dict[str, Document] = field(default_factory=dict)

    def get(self, name: str) -> Document | None:
        return self.documents.get(name)

    @property
    def tombstone(self) -> bool:
        """An evicted page: no documents, only the version a render must beat."""
        return not self.documents


def tombstone(page_id: int, slug: str, version: int) -> Entry:
    return Entry(page_id, slug, version, False, {})


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether the client takes gzip (`gzip;q=0` is a refusal)."""
    if not accept_encoding:
        return False
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def not_modified(if_none_match: str | None, if_modified_since: str | None, doc: Document) -> bool:
    """RFC 9110: If-None-Match wins; a weak match counts for GET."""
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or doc.etag in tags or doc.gzip_etag in tags
    return if_modified_since is not None and if_modified_since == doc.last_modified


def http_date(at: datetime) -> str:
    return format_datetime(at.astimezone(UTC).replace(microsecond=0), usegmt=True)


Validators = dict[str, tuple[str, str]]


def validators_of(entry: Entry | None) -> Validators:
    """Each document's (ETag, Last-Modified)."""
    if entry is None:
        return {}
    return {name: (d.etag, d.last_modified) for name, d in entry.documents.items()}


def keep_validators(new: Entry, old: Validators) -> Entry:
    """`new` with the Last-Modified of documents whose bytes did not change (`old` holds
    the previous render's validators), so a re-render that changes nothing does not look
    like news to clients."""
    if not old:
        return new
    docs = {}
    for name, doc in new.documents.items():
        before = old.get(name)
        if before is not None and before[0] == doc.etag:
            doc = Document(doc.body, doc.content_type, doc.etag, before[1], doc.gzipped)
        docs[name] = doc
    return Entry(new.page_id, new.slug, new.version, new.public, docs)


def _supersedes(old: Entry | None, new: Entry) -> bool:
    """Whether `new` may replace `old`: always, unless `old` is a newer render of the same
    page (a slug reused by another page starts its own versions)."""
    return old is None or old.page_id != new.page_id or old.version <= new.version


class Fallback:
    """Pages rendered from the store while the shared cache is away: each kept
    `FALLBACK_SECONDS`, at most `FALLBACK_PAGES` of them (the oldest go first)."""

    def __init__(self, seconds: float = FALLBACK_SECONDS, size: int = FALLBACK_PAGES) -> None:
        self.seconds = seconds
        self.size = size
        self._entries: OrderedDict[str, tuple[Entry, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, slug: str) -> Entry | None:
        found = self._entries.get(slug)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def put(self, entry: Entry) -> None:
        with self._lock:
            self._entries.pop(entry.slug, None)
            self._entries[entry.slug] = (entry, time.monotonic() + self.seconds)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def drop(self, slug: str) -> None:
        with self._lock:
            self._entries.pop(slug, None)


class PageCache(Protocol):
    #: Pages rendered from the store while the cache is away (never used by LocalCache).
    fallback: Fallback

    def get(self, slug: str) -> Entry | None: ...

    async def aget(self, slug: str) -> Entry | None: ...

    def put(self, entry: Entry) -> Entry | None: ...

    def version(self, slug: str) -> int | None: ...

    def evict(self, page_id: int, slug: str, version: int) -> None: ...

    def drop_page(self, page_id: int, version: int) -> None: ...


class LocalCache:
    """Embedded mode: entries in this process's memory (at most one per page, and a
    tombstone per evicted page for `TOMBSTONE_SECONDS`)."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        #: Each page's slug and the version that put it there (a rename moves it).
        self._slugs: dict[int, tuple[str, int]] = {}
        self._buried: dict[str, float] = {}
        self._lock = threading.Lock()
        self.fallback = Fallback()

    def get(self, slug: str) -> Entry | None:
        entry = self._entries.get(slug)
        return None if entry is None or entry.tombstone else entry

    async def aget(self, slug: str) -> Entry | None:
        return self.get(slug)

    def version(self, slug: str) -> int | None:
        entry = self.get(slug)
        return entry.version if entry else None

    def put(self, entry: Entry) -> Entry | None:
        """Store `entry` unless a newer version of the page is already there (under this
        slug or, renamed since, another); returns what is stored (None: a tombstone)."""
        with self._lock:
            old = self._entries.get(entry.slug)
            pointer = self._slugs.get(entry.page_id)
            if not _supersedes(old, entry) or (pointer is not None and pointer[1] > entry.version):
                return None if old is None or old.tombstone else old
            same = old is not None and old.page_id == entry.page_id
            stored = keep_validators(entry, validators_of(old) if same else {})
            if pointer is not None and pointer[0] != entry.slug:
                self._entries.pop(pointer[0], None)
            self._entries[entry.slug] = stored
            self._slugs[entry.page_id] = (entry.slug, entry.version)
            if stored.tombstone:
                self._buried[entry.slug] = time.monotonic() + TOMBSTONE_SECONDS
            else:
                self._buried.pop(entry.slug, None)
            self._forget_old_tombstones()
            return None if stored.tombstone else stored

    def evict(self, page_id: int, slug: str, version: int) -> None:
        self.put(tombstone(page_id, slug, version))
        self.fallback.drop(slug)

    def drop_page(self, page_id: int, version: int) -> None:
        """A deleted page, whose slug the caller no longer knows, becomes a tombstone."""
        pointer = self._slugs.get(page_id)
        if pointer is not None:
            self.evict(page_id, pointer[0], version)

    def _forget_old_tombstones(self) -> None:
        now = time.monotonic()
        for slug in [s for s, until in self._buried.items() if until < now]:
            del self._buried[slug]
            entry = self._entries.get(slug)
            if entry is not None and entry.tombstone:
                del self._entries[slug]
                self._slugs.pop(entry.page_id, None)


class RedisCache:
    """Scaled mode: entries in Redis (one hash per page), memoised per process by version.

    `get`, `put` and `evict` are for threads (workers, cold renders); the event loop
    calls `aget` and `aversion`, which raise `CacheUnavailable` when Redis fails or the
    breaker says it just did."""

    def __init__(self, queues: Any) -> None:
        self.queues = queues
        self.redis: redis.Redis = queues.connection
        self.prefix: str = queues.prefix
        self.fallback = Fallback()
        self._memo = _Memo(MEMO_PAGES)

    def _key(self, slug: str) -> str:
        return f"{self.prefix}pagecache:{slug}"

    def _slug_key(self, page_id: int) -> str:
        return f"{self.prefix}pagecache-slug:{page_id}"

    # --- the event loop's reads --------------------------------------------------------

    async def aget(self, slug: str) -> Entry | None:
        version = await self._ask(lambda client: client.hget(self._key(slug), "version"))
        if version is None:
            self._memo.pop(slug, None)
            return None
        memo = self._memo.get(slug)
        if memo is None or memo.version != int(version):
            raw = await self._ask(lambda client: client.hgetall(self._key(slug)))
            if not raw:
                return None
            memo = self._memo[slug] = _decode(raw)
        return None if memo.tombstone else memo

    async def _ask(self, call: Any) -> Any:
        breaker = self.queues.breaker
        if not breaker.allow():
            raise CacheUnavailable("Redis failed a moment ago")
        try:
            answer = await call(self.queues.aconnection())
        except REDIS_ERRORS as exc:
            breaker.failed()
            raise CacheUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc
        breaker.succeeded()
        return answer

    # --- threads --------------------------------------------------------------------------

    def version(self, slug: str) -> int | None:
        entry = self.get(slug)
        return entry.version if entry else None

    def get(self, slug: str) -> Entry | None:
        entry = self._current(slug)
        return None if entry is None or entry.tombstone else entry

    def _current(self, slug: str) -> Entry | None:
        raw = self.redis.hget(self._key(slug), "version")
        if raw is None:
            self._memo.pop(slug, None)
            return None
        memo = self._memo.get(slug)
        if memo is not None and memo.version == int(raw):
            return memo
        values: dict[bytes, bytes] = self.redis.hgetall(self._key(slug))  # type: ignore[assignment]
        if not values:
            return None
        entry = self._memo[slug] = _decode(values)
        return entry

    def put(self, entry: Entry) -> Entry | None:
        """Store `entry` unless a newer render (or tombstone) of the page is there, under
        this slug or, renamed since, another; atomically (WATCH/MULTI: an eviction between
        the check and the write wins). Returns what is stored (None: a tombstone)."""
        key = self._key(entry.slug)
        slug_key = self._slug_key(entry.page_id)
        stored: list[Entry | None] = [None]

        def write(pipe: Any) -> None:
            version, meta = pipe.hmget(key, "version", "meta")
            old = _decode_meta(version, meta)
            pointer = _pointer(pipe.get(slug_key))
            if not _supersedes(old, entry) or (pointer is not None and pointer[1] > entry.version):
                stored[0] = None
                return
            same = old is not None and old.page_id == entry.page_id
            kept = keep_validators(entry, validators_of(old) if same else {})
            pipe.multi()
            if pointer is not None and pointer[0] != entry.slug:
                pipe.delete(self._key(pointer[0]))
            pipe.delete(key)
            pipe.hset(key, mapping=_encode(kept))
            if kept.tombstone:
                pipe.expire(key, TOMBSTONE_SECONDS)
            # A tombstone's pointer goes with it; a live page's stays.
            ttl = TOMBSTONE_SECONDS if kept.tombstone else None
            pipe.set(slug_key, f"{entry.version}:{entry.slug}", ex=ttl)
            stored[0] = kept

        self.redis.transaction(write, key, slug_key)
        result = stored[0]
        if result is None:
            return self.get(entry.slug)
        self._memo[entry.slug] = result
        return None if result.tombstone else result

    def evict(self, page_id: int, slug: str, version: int) -> None:
        self.put(tombstone(page_id, slug, version))
        self.fallback.drop(slug)

    def drop_page(self, page_id: int, version: int) -> None:
        """A deleted page, whose slug the caller no longer knows, becomes a tombstone."""
        pointer = _pointer(self.redis.get(self._slug_key(page_id)))
        if pointer is not None:
            self.evict(page_id, pointer[0], version)


class _Memo:
    """The last entry read per slug, at most `size` of them (least recently read go)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, slug: str) -> Entry | None:
        entry = self._entries.get(slug)
        if entry is not None:
            with self._lock, contextlib.suppress(KeyError):
                self._entries.move_to_end(slug)
        return entry

    def __setitem__(self, slug: str, entry: Entry) -> None:
        with self._lock:
            self._entries[slug] = entry
            self._entries.move_to_end(slug)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def pop(self, slug: str, default: Entry | None = None) -> Entry | None:
        with self._lock:
            return self._entries.pop(slug, default)

    def __len__(self) -> int:
        return len(self._entries)


def _pointer(raw: Any) -> tuple[str, int] | None:
    """A page's slug pointer: `version:slug` (a bare slug, as older releases wrote it,
    counts as version 0)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    version, colon, slug = text.partition(":")
    if colon and version.isdigit():
        return slug, int(version)
    return text, 0


def _encode(entry: Entry) -> dict[str, Any]:
    meta = {
        "page_id": entry.page_id,
        "slug": entry.slug,
        "public": entry.public,
        "docs": {
            name: [d.content_type, d.etag, d.last_modified] for name, d in entry.documents.items()
        },
    }
    values: dict[str, Any] = {"version": entry.version, "meta": json.dumps(meta)}
    for name, doc in entry.documents.items():
        values[f"doc:{name}"] = doc.body
        if doc.gzipped is not None:
            values[f"gz:{name}"] = doc.gzipped
    return values


def _decode(raw: dict[bytes, bytes]) -> Entry:
    meta = json.loads(raw[b"meta"])
    docs = {
        name: Document(
            raw[f"doc:{name}".encode()], ctype, etag, modified, raw.get(f"gz:{name}".encode())
        )
        for name, (ctype, etag, modified) in meta["docs"].items()
        if f"doc:{name}".encode() in raw
    }
    return Entry(meta["page_id"], meta["slug"], int(raw[b"version"]), meta["public"], docs)


def _decode_meta(version: bytes | None, meta: bytes | None) -> Entry | None:
    """An entry's version and validators without its bodies (what `put` compares)."""
    if version is None or meta is None:
        return None
    data = json.loads(meta)
    docs = {
        name: Document(b"", ctype, etag, modified)
        for name, (ctype, etag, modified) in data["docs"].items()
    }
    return Entry(data["page_id"], data["slug"], int(version), data["public"], docs)


def for_runtime(rt: Runtime) -> PageCache:
    """The runtime's page cache, made on first use (one per process)."""
    state = pages_state(rt)
    cache = state.page_cache
    if cache is None:
        with state.lock:  # two threads asking at once still share one cache
            cache = state.page_cache
            if cache is None:
                cache = state.page_cache = (
                    LocalCache() if rt.queues.embedded else RedisCache(rt.queues)
                )
    return cache
