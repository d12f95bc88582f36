"""The page cache: rendered documents of each page, served without touching the database.

Workers write every document of a page (HTML and JSON) after a change; web processes read
them. In embedded mode the cache is a dict in the process (workers are threads of the web
process); in scaled mode it lives in Redis, shared by every web process and worker, and
each web process keeps the last entry it read per page and revalidates it with one small
`GET` of the page's cache version.

Entries are keyed by slug (the URL), so a request needs no lookup first. Each entry knows
whether it may be served to anyone (`public`: an active public page); private and
inactive pages go through the access check on the routed path.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Protocol

import redis

#: How long browsers and proxies may reuse a public page: short, so news shows quickly.
PUBLIC_CACHE_CONTROL = "public, max-age=5, stale-while-revalidate=25"
PRIVATE_CACHE_CONTROL = "private, no-store"
GZIP_MIN = 1024
WATCH_TTL = 0.2
COMPRESSIBLE = ("text/", "application/json", "application/rss", "application/atom", "image/svg")


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
        """The gzip variant's ETag: a different representation, so a different tag."""
        return self.etag[:-1] + '-gz"'


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


def keep_validators(new: Entry, old: Entry | None) -> Entry:
    """`new` with the Last-Modified of documents whose bytes did not change, so a re-render
    that changes nothing does not look like news to clients."""
    if old is None:
        return new
    docs = {}
    for name, doc in new.documents.items():
        before = old.documents.get(name)
        if before is not None and before.etag == doc.etag:
            doc = before
        docs[name] = doc
    return Entry(new.page_id, new.slug, new.version, new.public, docs)


class PageCache(Protocol):
    def get(self, slug: str) -> Entry | None: ...

    def put(self, entry: Entry) -> Entry: ...

    def version(self, slug: str) -> int | None: ...

    def watched_version(self, slug: str) -> int | None: ...

    def drop(self, slug: str) -> None: ...

    def drop_page(self, page_id: int) -> None: ...


class LocalCache:
    """Embedded mode: entries in this process's memory."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._slugs: dict[int, str] = {}
        self._lock = threading.Lock()

    def get(self, slug: str) -> Entry | None:
        return self._entries.get(slug)

    def version(self, slug: str) -> int | None:
        entry = self._entries.get(slug)
        return entry.version if entry else None

    def watched_version(self, slug: str) -> int | None:
        return self.version(slug)

    def put(self, entry: Entry) -> Entry:
        """Store `entry` unless a newer version is already there; returns what is stored."""
        with self._lock:
            old = self._entries.get(entry.slug)
            if old is not None and old.version > entry.version:
                return old
            stored = keep_validators(entry, old)
            previous_slug = self._slugs.get(entry.page_id)
            if previous_slug and previous_slug != entry.slug:
                self._entries.pop(previous_slug, None)
            self._entries[entry.slug] = stored
            self._slugs[entry.page_id] = entry.slug
            return stored

    def drop(self, slug: str) -> None:
        with self._lock:
            entry = self._entries.pop(slug, None)
            if entry is not None:
                self._slugs.pop(entry.page_id, None)

    def drop_page(self, page_id: int) -> None:
        """Forget a deleted page, whose slug the caller no longer knows."""
        with self._lock:
            slug = self._slugs.pop(page_id, None)
            if slug is not None:
                self._entries.pop(slug, None)


class RedisCache:
    """Scaled mode: entries in Redis (one hash per page), memoised per process by version."""

    def __init__(self, connection: redis.Redis, prefix: str = "") -> None:
        self.redis = connection
        self.prefix = prefix
        self._memo: dict[str, Entry] = {}
        self._watched: dict[str, tuple[int | None, float]] = {}

    def _key(self, slug: str) -> str:
        return f"{self.prefix}pagecache:{slug}"

    def _slug_key(self, page_id: int) -> str:
        return f"{self.prefix}pagecache-slug:{page_id}"

    def version(self, slug: str) -> int | None:
        raw = self.redis.hget(self._key(slug), "version")
        return int(raw) if raw is not None else None

    def watched_version(self, slug: str) -> int | None:
        """The version for live-update streams: asked of Redis at most every `WATCH_TTL`
        seconds per page and process, however many visitors have the page open."""
        now = time.monotonic()
        seen = self._watched.get(slug)
        if seen is not None and seen[1] > now:
            return seen[0]
        version = self.version(slug)
        self._watched[slug] = (version, now + WATCH_TTL)
        return version

    def get(self, slug: str) -> Entry | None:
        version = self.version(slug)
        if version is None:
            return None
        memo = self._memo.get(slug)
        if memo is not None and memo.version == version:
            return memo
        raw: dict[bytes, bytes] = self.redis.hgetall(self._key(slug))  # type: ignore[assignment]
        if not raw:
            return None
        entry = _decode(raw)
        self._memo[slug] = entry
        return entry

    def put(self, entry: Entry) -> Entry:
        old = self.get(entry.slug)
        if old is not None and old.version > entry.version:
            return old
        stored = keep_validators(entry, old)
        previous = self.redis.get(self._slug_key(entry.page_id))
        pipe = self.redis.pipeline()
        if previous and previous.decode() != entry.slug:  # type: ignore[union-attr]
            pipe.delete(self._key(previous.decode()))  # type: ignore[union-attr]
        pipe.delete(self._key(entry.slug))
        pipe.hset(self._key(entry.slug), mapping=_encode(stored))  # type: ignore[arg-type]
        pipe.set(self._slug_key(entry.page_id), entry.slug)
        pipe.execute()
        self._memo[entry.slug] = stored
        return stored

    def drop(self, slug: str) -> None:
        self.redis.delete(self._key(slug))
        self._memo.pop(slug, None)

    def drop_page(self, page_id: int) -> None:
        """Forget a deleted page, whose slug the caller no longer knows."""
        slug = self.redis.get(self._slug_key(page_id))
        if slug is not None:
            self.drop(slug.decode())  # type: ignore[union-attr]
        self.redis.delete(self._slug_key(page_id))


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


def for_runtime(rt: Any) -> PageCache:
    """The runtime's page cache, made on first use (one per process)."""
    cache = rt.extras.get("page_cache")
    if cache is None:
        made: PageCache
        if rt.queues.embedded:
            made = LocalCache()
        else:
            made = RedisCache(rt.queues.connection, rt.queues.prefix)
        # setdefault: two threads asking at once still share one cache.
        cache = rt.extras.setdefault("page_cache", made)
    return cache
