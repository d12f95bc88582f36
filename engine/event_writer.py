"""Group commit for the intake: many requests' events committed in one transaction.

A commit with `synchronous=FULL` (SQLite) or a WAL flush (PostgreSQL) costs an fsync, and
the disk does only so many a second. One writer task per process takes every submission
waiting when it becomes free, commits them together in a worker thread, and then releases
each waiting request with its own answer. Under load the batches grow by themselves (what
arrives during one commit goes into the next); alone, a request waits for one commit only.
Nothing is acknowledged before its commit returned.

The queue is bounded: when the store falls behind (a slow disk, a long lock), waiting
submissions stop at `MAX_PENDING` of them or `MAX_PENDING_BYTES` of deliveries, and further
ones are shed (`Overloaded`: the intake answers 503 with `Retry-After`; nothing was
acknowledged, so the tool's retry loses nothing) instead of growing the process's memory
without end. Deliveries with resolves may use twice the room: a resolve refused keeps an
outage on a page, a firing refused only delays it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .db import Store
from .events import Stored, Submission, ensure_purge_scheduled, store_batch

log = logging.getLogger(__name__)

#: Most submissions in one transaction: bounds the time the write lock is held.
MAX_BATCH = 500
#: Submissions, and bytes of their deliveries, that may wait for a commit (see above).
MAX_PENDING = 5000
MAX_PENDING_BYTES = 64 * 1024 * 1024


class Committer(Protocol):
    """Commits a batch elsewhere (`engine.store_process.StoreProcess`): the events' places,
    and whether an `evaluate` row was written."""

    def write(self, submissions: list[Submission]) -> tuple[list[list[Stored]], bool]: ...


class Overloaded(Exception):
    """The writer's queue is full: the submission was not taken (answer 503, retry later)."""


@dataclass
class _Pending:
    submission: Submission
    future: asyncio.Future[list[Stored]]
    size: int = 0


@dataclass
class BatchStats:
    """How the writer has batched so far (reported by the benchmark)."""

    batches: int = 0
    submissions: int = 0
    largest: int = 0
    fallbacks: int = 0
    #: Submissions refused because the queue was full.
    shed: int = 0
    #: Wall time spent in commits (the thread's whole transaction), seconds.
    commit_seconds: float = 0.0


class EventWriter:
    """Commits submissions in groups. `submit` returns once the submission is committed,
    or raises what storing it raised."""

    def __init__(
        self,
        store_: Store,
        max_batch: int = MAX_BATCH,
        on_emit: Callable[[], object] | None = None,
        writers: int = 1,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        committer: Committer | None = None,
    ) -> None:
        self.store = store_
        #: Where batches are committed when not in this process (embedded mode's store
        #: process); None: here, in a worker thread.
        self.committer = committer
        #: Transactions in flight at once: one for SQLite (a single writer anyway); more for
        #: PostgreSQL, which flushes concurrent commits' WAL together.
        self.writers = max(1, writers)
        #: Called (from the writer's thread) after a commit that wrote outbox rows.
        self.on_emit = on_emit
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        #: Submissions and bytes waiting in the queue (not yet taken by a writer).
        self.pending = 0
        self.pending_bytes = 0
        #: Submissions taken by a writer whose commit has not returned yet.
        self.writing = 0
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._purge_scheduled = False

    async def submit(
        self, submission: Submission, *, size: int = 0, resolves: bool = False
    ) -> list[Stored]:
        """Store `submission` durably (in some batch) and return its events' places;
        `Overloaded` when the queue is full (`size`: its delivery's bytes; `resolves`: it
        carries resolves, which may use twice the room)."""
        room = 2 if resolves else 1
        if (
            self.pending >= self.max_pending * room
            or self.pending_bytes + size > self.max_pending_bytes * room
        ):
            self.stats.shed += 1
            raise Overloaded(
                f"{self.pending} deliveries ({self.pending_bytes} bytes) are waiting for the store"
            )
        loop = asyncio.get_running_loop()
        if self._loop is not loop or not self._tasks or any(t.done() for t in self._tasks):
            # A new event loop (a test client, a restarted server) gets its own writers.
            for task in self._tasks:
                task.cancel()
            self._loop = loop
            self._queue = asyncio.Queue()
            self.pending = self.pending_bytes = 0
            self._tasks = [
                loop.create_task(self._run(self._queue), name=f"beacon-event-writer-{n}")
                for n in range(self.writers)
            ]
        assert self._queue is not None
        future: asyncio.Future[list[Stored]] = loop.create_future()
        self._queue.put_nowait(_Pending(submission, future, size))
        self.pending += 1
        self.pending_bytes += size
        return await future

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            self.pending -= len(batch)
            self.pending_bytes -= sum(p.size for p in batch)
            self.writing += len(batch)
            try:
                await self._commit(batch)
            finally:
                self.writing -= len(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await asyncio.to_thread(self._write, [p.submission for p in batch])
        except Exception as exc:
            if len(batch) == 1:
                # A lone submission's error is its own: the request answers with it.
                self._fail(batch[0], exc)
                return
            # One bad submission must not fail the others: retry each in its own transaction.
            self.stats.fallbacks += 1
            log.warning("group commit of %d submissions failed; retrying one by one", len(batch))
            for pending in batch:
                await self._commit([pending])
            return
        self.stats.batches += 1
        self.stats.submissions += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)

    def _write(self, submissions: list[Submission]) -> list[list[Stored]]:
        started = time.perf_counter()
        if self.committer is not None:
            results, emitted = self.committer.write(submissions)
            self.stats.commit_seconds += time.perf_counter() - started
            if emitted and self.on_emit is not None:
                self.on_emit()
            return results
        # Urgent: every request of the batch waits for this commit.
        with self.store.begin(urgent=True) as conn:
            batch = store_batch(conn, submissions)
            if not self._purge_scheduled:
                # Where events are written, the daily purge of old ones must be pending.
                ensure_purge_scheduled(conn)
        self._purge_scheduled = True
        self.stats.commit_seconds += time.perf_counter() - started
        if batch.emitted and self.on_emit is not None:
            self.on_emit()
        return batch.results

    @staticmethod
    def _fail(pending: _Pending, exc: BaseException) -> None:
        if not pending.future.done():
            pending.future.set_exception(exc)
