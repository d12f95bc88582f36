"""Live updates (server-sent events): one watcher per page and process, capped listeners.

An open page holds a stream that says "check the page" whenever the page's cache version
changes. However many visitors have a page open, one task per process looks at the cache
(every `POLL_SECONDS`) and wakes their streams; an idle stream costs an open socket and a
sleeping coroutine, nothing more.

Streams are bounded: at most `BEACON_LIVE_PER_PAGE` per page and `BEACON_LIVE_PER_CLIENT`
per client address in one process; past either, the stream is refused (503 or 429, with
`Retry-After`), and the page's script falls back to checking the page every minute.

A stream ends when access to its page may have ended: the page's entry is evicted
(`pages.render.evict`: deactivated, made private, deleted or renamed; seen here at once,
and by other processes' watchers within `POLL_SECONDS`), or a stream opened because the
page was public finds it no longer is. EventSource then reconnects, through the access
check. A stream opened by a member of a private or inactive page checks that member's
access again every `RECHECK_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from engine.runtime import Runtime

from .cache import CacheUnavailable, PageCache
from .state import of as pages_state

#: How often a page's watcher looks at its cache version.
POLL_SECONDS = 0.25
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
#: How often a member's stream of a private or inactive page asks the access check again.
RECHECK_SECONDS = 15.0
#: What a refused client is asked to wait.
REFUSED_RETRY_AFTER = 60


@dataclass(eq=False)
class Listener:
    """One open stream: its page, its client address, and whether it was let in because
    the page was public (it ends when the page no longer is)."""

    slug: str
    client: str
    public: bool
    version: int | None = None
    ended: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def tell(self, version: int) -> None:
        self.version = version
        self._wake.set()

    def end(self) -> None:
        self.ended = True
        self._wake.set()

    async def wait(self, seconds: float) -> bool:
        """Until told something or `seconds` pass; whether something was told."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return False
        self._wake.clear()
        return True


@dataclass(eq=False)
class _Watch:
    listeners: set[Listener] = field(default_factory=set)
    version: int | None = None
    task: asyncio.Task[None] | None = None


class LiveHub:
    """The open streams of one event loop, by page and by client address."""

    def __init__(
        self, cache: PageCache, per_page: int, per_client: int, poll: float = POLL_SECONDS
    ) -> None:
        self.cache = cache
        self.per_page = per_page
        self.per_client = per_client
        self.poll = poll
        self._pages: dict[str, _Watch] = {}
        self._clients: dict[str, int] = {}

    def count(self, slug: str | None = None) -> int:
        """Open streams (of page `slug`)."""
        if slug is not None:
            watch = self._pages.get(slug)
            return len(watch.listeners) if watch else 0
        return sum(len(w.listeners) for w in self._pages.values())

    def join(self, slug: str, client: str, version: int, *, public: bool) -> Listener:
        """A new listener of `slug`, or the refusal as an HTTP error."""
        if self._clients.get(client, 0) >= self.per_client:
            raise HTTPException(
                429,
                f"too many live-update streams from your address (at most {self.per_client}); "
                "the page still refreshes itself every minute",
                headers={"Retry-After": str(REFUSED_RETRY_AFTER)},
            )
        watch = self._pages.setdefault(slug, _Watch(version=version))
        if len(watch.listeners) >= self.per_page:
            raise HTTPException(
                503,
                f"this page has too many live-update streams open (at most {self.per_page}); "
                "it still refreshes itself every minute",
                headers={"Retry-After": str(REFUSED_RETRY_AFTER)},
            )
        listener = Listener(slug, client, public, version)
        watch.listeners.add(listener)
        self._clients[client] = self._clients.get(client, 0) + 1
        if watch.task is None or watch.task.done():
            watch.task = asyncio.get_running_loop().create_task(
                self._watch(slug, watch), name=f"beacon-live-{slug}"
            )
        return listener

    def leave(self, listener: Listener) -> None:
        watch = self._pages.get(listener.slug)
        if watch is not None and listener in watch.listeners:
            watch.listeners.discard(listener)
            left = self._clients.get(listener.client, 1) - 1
            if left > 0:
                self._clients[listener.client] = left
            else:
                self._clients.pop(listener.client, None)
            if not watch.listeners:
                self._pages.pop(listener.slug, None)
                if watch.task is not None:
                    watch.task.cancel()

    def end(self, slug: str) -> None:
        """End every stream of page `slug` (access to it may have ended)."""
        watch = self._pages.get(slug)
        for listener in list(watch.listeners) if watch else []:
            listener.end()

    async def _watch(self, slug: str, watch: _Watch) -> None:
        while watch.listeners:
            await asyncio.sleep(self.poll)
            try:
                entry = await self.cache.aget(slug)
            except CacheUnavailable:
                continue  # Redis is away: keep the streams, look again later
            if entry is None:
                self.end(slug)  # evicted or deleted
                return
            if entry.version != watch.version:
                watch.version = entry.version
                for listener in list(watch.listeners):
                    if listener.public and not entry.public:
                        listener.end()
                    else:
                        listener.tell(entry.version)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveHub] = weakref.WeakKeyDictionary()


def hub_for(rt: Runtime, cache: PageCache) -> LiveHub:
    """The running loop's hub for runtime `rt` (`beacon serve` has one loop; tests have
    several, and an asyncio task or event belongs to one loop)."""
    hubs = pages_state(rt).live_hubs
    loop = asyncio.get_running_loop()
    hub = hubs.get(loop)
    if hub is None:
        hub = hubs[loop] = LiveHub(cache, rt.settings.live_per_page, rt.settings.live_per_client)
    return hub


def end_streams(rt: Runtime, slug: str) -> None:
    """End the streams of page `slug` on every loop of this process (eviction)."""
    for loop, hub in list(pages_state(rt).live_hubs.items()):
        if loop.is_closed():
            continue
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(hub.end, slug)


class LiveResponse(StreamingResponse):
    """The stream of one listener, which leaves its hub however the response ends (even
    when the client is gone before the first byte)."""

    def __init__(
        self,
        hub: LiveHub,
        listener: Listener,
        still_allowed: Callable[[], Awaitable[bool]] | None,
        headers: dict[str, str],
    ) -> None:
        self.hub = hub
        self.listener = listener
        super().__init__(
            _events(listener, still_allowed), media_type="text/event-stream", headers=headers
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.leave(self.listener)


async def _events(
    listener: Listener, still_allowed: Callable[[], Awaitable[bool]] | None
) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    yield f"data: {listener.version}\n\n".encode()
    idle = 0.0
    while True:
        told = await listener.wait(KEEPALIVE_SECONDS)
        if listener.ended:
            return
        if told:
            yield f"data: {listener.version}\n\n".encode()
            continue
        idle += KEEPALIVE_SECONDS
        if still_allowed is not None and idle >= RECHECK_SECONDS:
            idle = 0.0
            if not await still_allowed():
                return
        yield b": keepalive\n\n"
