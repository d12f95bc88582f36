"""The dispatcher: outbox rows and due deadlines become RQ jobs.

Every `beacon worker` and the embedded `beacon serve` run a `Ticker` thread. Each pass fires
due deadlines into outbox rows (engine.deadlines), claims outbox rows (engine.outbox) and
enqueues one `run_outbox` job per kind for the whole claimed batch, so the number of jobs
grows with batches, not with events. Handlers are looked up in the runtime's `handlers`, an
explicit registry of dotted paths: this module's `HANDLERS` (the workers' own jobs) and the
pages' render handlers (`pages.render.HANDLERS`), put together by `cli.wiring`, since
`workers` and `pages` never import each other.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import redis
from rq.timeouts import BaseTimeoutException

from engine import deadlines, outbox
from engine.queue import QUEUE_NAMES
from engine.runtime import Runtime, current
from engine.store_process import StoreProcess, StoreProcessGone
from engine.tables import utcnow

from .lease import renewing

log = logging.getLogger(__name__)

Handler = Callable[[Runtime, list[dict[str, Any]]], None]

#: Outbox kind -> (queue, "module:function") of the workers' own jobs. A handler takes the
#: runtime and the payloads of every row of its kind in the batch, and must be idempotent
#: (delivery is at least once).
HANDLERS: dict[str, tuple[str, str]] = {
    "noop": ("beacon-default", "workers.dispatch:handle_noop"),
    "deadline.maintenance.start": ("beacon-default", "workers.jobs:handle_maintenance_start"),
    "deadline.maintenance.end": ("beacon-default", "workers.jobs:handle_maintenance_end"),
    "deadline.service.override": ("beacon-default", "workers.jobs:handle_override_expiry"),
    "deadline.domains.recheck": ("beacon-default", "workers.jobs:handle_domain_recheck"),
    "notify.channel": ("beacon-notify", "workers.notify:handle_notify_channel"),
    "notify.incident_update": ("beacon-notify", "workers.fanout:handle_incident_update"),
    "notify.maintenance_update": ("beacon-notify", "workers.fanout:handle_maintenance_update"),
    "notify.component_update": ("beacon-notify", "workers.fanout:handle_component_update"),
    "notify.subscriber_confirm": ("beacon-notify", "workers.fanout:handle_subscriber_confirm"),
    "deadline.notify.resume": ("beacon-notify", "workers.fanout:handle_resume"),
    "deadline.notify.sweep": ("beacon-notify", "workers.fanout:handle_sweep"),
    "deadline.notify.chunk": ("beacon-notify", "workers.fanout:handle_chunk"),
    "accounts.email": ("beacon-notify", "workers.account_mail:handle_account_email"),
    "deadline.events.purge": ("beacon-default", "engine.events:handle_purge"),
    "evaluate": ("beacon-evaluate", "workers.evaluate:handle_evaluate"),
    "deadline.rules.tick": ("beacon-evaluate", "workers.evaluate:handle_tick"),
    "maintenance.ended": ("beacon-evaluate", "workers.evaluate:handle_maintenance_ended"),
    "rules.changed": ("beacon-evaluate", "workers.evaluate:handle_rules_changed"),
}

#: The queue of notification work (embedded mode serves it with threads of its own).
NOTIFY_QUEUE = "beacon-notify"
#: Attempts before a failing row is given up on (kept, with its error, for operators).
MAX_ATTEMPTS = 8
BATCH = 200
#: A running job renews its rows' claim three times per lease (`Settings.outbox_lease`).
RENEWALS_PER_LEASE = 3
#: While the queue's Redis is down, a dispatcher tries again this often.
QUEUE_DOWN_PAUSE = 1.0


def handle_noop(_rt: Runtime, _payloads: list[dict[str, Any]]) -> None:
    """Does nothing: a kind for checking the pipeline."""


def resolve(rt: Runtime, kind: str) -> tuple[str, Handler]:
    queue, path = rt.handlers[kind]
    module, _, name = path.partition(":")
    return queue, getattr(importlib.import_module(module), name)


def dispatch_once(
    rt: Runtime, *, kinds: frozenset[str] | None = None, others: bool = False, fire: bool = True
) -> int:
    """One pass: fire due deadlines (`fire`), claim outbox rows (of `kinds`, or with
    `others` of every other kind) and enqueue their jobs; how many rows it claimed."""
    if fire:
        deadlines.fire_due(rt.store)
    rows = outbox.claim(
        rt.store, rt.name, lease=rt.settings.outbox_lease, kinds=kinds, others=others
    )
    if not rows:
        return 0
    by_kind: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row.id)
    unknown = [k for k in by_kind if k not in rt.handlers]
    for kind in unknown:
        ids = by_kind.pop(kind)
        log.error("no handler for outbox kind %r (rows %s); giving up on them", kind, ids)
        outbox.mark_failed(
            rt.store,
            ids,
            f"no handler for kind {kind!r}",
            utcnow() + timedelta(days=3650),
            rt.settings.outbox_lease,
        )
    enqueued: set[int] = set()
    try:
        for kind, ids in by_kind.items():
            queue = rt.handlers[kind][0]
            for start in range(0, len(ids), BATCH):
                chunk = ids[start : start + BATCH]
                rt.queues.enqueue(
                    queue,
                    "workers.dispatch.run_outbox",
                    chunk,
                    job_id=f"outbox-{chunk[0]}-{chunk[-1]}-{rows[0].attempts}",
                    result_ttl=0,
                    failure_ttl=86400,
                )
                enqueued.update(chunk)
    except redis.RedisError:
        # Redis is away: what was not enqueued goes back, to be taken when it returns
        # (not after the claim's lease of a minute).
        outbox.release(rt.store, [row.id for row in rows if row.id not in enqueued])
        raise
    return len(rows)


def run_outbox(ids: list[int]) -> None:
    """RQ job: run the handlers of the outbox rows `ids` that are not done yet.

    A kind's rows go to its handler together. When that fails, each row is run on its own,
    so one row that cannot be handled (a bug, bad data) is retried, and finally given up
    on, alone, while the others of its batch are done. Handlers are idempotent: a row
    handled twice has one effect."""
    rt = current()
    rows = outbox.take(rt.store, ids)
    by_kind: dict[str, list[outbox.OutboxRow]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row)
    for kind, kind_rows in by_kind.items():
        try:
            _queue, handler = resolve(rt, kind)
        except Exception as exc:
            _failed(rt, kind, kind_rows, exc)
            continue
        try:
            with _renewing(rt, kind_rows):
                handler(rt, [r.payload for r in kind_rows])
        except BaseTimeoutException:
            # Out of time: the rows' lease is long gone and another dispatcher may hold
            # them; running them one by one now would race it. They are retried.
            raise
        except Exception as exc:  # a handler's failure must not lose the rows: retry later
            if len(kind_rows) == 1:
                _failed(rt, kind, kind_rows, exc)
                continue
            # Each row's own failure is logged below: this line would only repeat it.
            log.log(
                logging.DEBUG if isinstance(exc, Retry) else logging.WARNING,
                "outbox handler for %r failed on %d rows (%r); running them one by one",
                kind,
                len(kind_rows),
                exc,
            )
            for row in kind_rows:
                try:
                    with _renewing(rt, [row]):
                        handler(rt, [row.payload])
                except BaseTimeoutException:
                    raise
                except Exception as one:
                    _failed(rt, kind, [row], one)
                else:
                    outbox.mark_done(rt.store, [row.id])
            continue
        outbox.mark_done(rt.store, [r.id for r in kind_rows])
    rt.worked.set()


def _renewing(rt: Runtime, rows: list[outbox.OutboxRow]) -> contextlib.AbstractContextManager[None]:
    """The rows' claim renewed while their handler runs (a fan-out to a large page takes
    longer than the claim's lease, and another dispatcher would take the rows over)."""
    ids = [r.id for r in rows]
    every = rt.settings.outbox_lease.total_seconds() / RENEWALS_PER_LEASE
    return renewing(lambda: outbox.renew(rt.store, ids), every)


class Retry(Exception):
    """A handler's failure that its message explains (a provider down, a host that does not
    answer): logged in one line with that reason, its traceback only at debug level, since
    a traceback per retry would bury the log (issue 19). Anything else is a bug, logged
    with its traceback. `retry_after` (seconds) is the far end's own wait (a 429's
    `Retry-After`), which the backoff does not undercut."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _failed(rt: Runtime, kind: str, rows: list[outbox.OutboxRow], exc: Exception) -> None:
    """Rows whose handler raised: retried with backoff, given up on after `MAX_ATTEMPTS`
    (kept, with the error, for operators)."""
    attempts = max(r.attempts for r in rows)
    ids = [r.id for r in rows]
    giving_up = attempts >= MAX_ATTEMPTS
    delay = min(2**attempts, 300)
    if isinstance(exc, Retry) and exc.retry_after:
        delay = max(delay, int(exc.retry_after + 0.999))  # retrying sooner earns another 429
    if isinstance(exc, Retry):
        log.warning(
            "%s failed (attempt %d of %d): %s; %s",
            kind,
            attempts,
            MAX_ATTEMPTS,
            exc,
            "giving up" if giving_up else f"next try in {delay} s",
            exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
        )
    else:
        log.error(
            "outbox handler for %r failed on rows %s (attempt %d)",
            kind,
            ids,
            attempts,
            exc_info=exc,
        )
    lease = rt.settings.outbox_lease
    if giving_up:
        outbox.mark_failed(
            rt.store, ids, f"gave up: {exc!r}", utcnow() + timedelta(days=3650), lease
        )
    else:
        outbox.mark_failed(rt.store, ids, repr(exc), utcnow() + timedelta(seconds=delay), lease)


class Ticker(threading.Thread):
    """Runs `dispatch_once` every `interval` seconds, or at once when nudged."""

    def __init__(
        self,
        rt: Runtime,
        interval: float = 0.25,
        breath: float = 0.05,
        max_breath: float | None = None,
        *,
        kinds: frozenset[str] | None = None,
        others: bool = False,
        fire: bool = True,
    ) -> None:
        super().__init__(name="beacon-ticker", daemon=True)
        self.rt = rt
        #: What this dispatcher claims (`dispatch_once`): embedded mode's store process
        #: dispatches evaluation, its web process everything else and the deadlines.
        self.kinds = kinds
        self.others = others
        self.fire = fire
        self.interval = interval
        #: The pause after a pass that found work, doubling while passes keep finding work
        #: up to `max_breath` (default `interval`), and back to `breath` after an idle pass.
        #: Under load it lets the work of many commits gather into one claim and one job
        #: per kind (the intake adds no `evaluate` row while an unclaimed one waits): a job
        #: costs about 70 Redis commands, some 8 ms of CPU on embedded mode's emulated Redis,
        #: whatever its size. A lone alert after a quiet spell is dispatched at once.
        self.breath = breath
        self.max_breath = interval if max_breath is None else max_breath
        self._stop_event = threading.Event()

    def run(self) -> None:
        pause = self.breath
        queue_down = False
        while not self._stop_event.is_set():
            self.rt.delivered.clear()
            try:
                busy = dispatch_once(self.rt, kinds=self.kinds, others=self.others, fire=self.fire)
            except redis.RedisError as exc:
                if not queue_down:
                    log.error("the queue (Redis) is unavailable: %s; work waits in the outbox", exc)
                queue_down = True
                self._stop_event.wait(QUEUE_DOWN_PAUSE)
                continue
            except Exception:  # the database may be briefly away: keep ticking
                log.exception("dispatcher pass failed")
                busy = 0
            if queue_down:
                log.warning("the queue (Redis) is back; dispatching the outbox")
                queue_down = False
            if busy:
                self._rest(pause)
                pause = min(pause * 2, self.max_breath)
            else:
                pause = self.breath
                self.rt.nudge.wait(self.interval)
                self.rt.nudge.clear()

    def _rest(self, pause: float) -> None:
        """The pause after a busy pass. In embedded mode, a delivery that no running
        evaluation will take ends it once `breath` has passed: behind passes of follow-up
        work (renders, notifications) a webhook would otherwise wait up to `interval` for
        its evaluation to be dispatched. Under a flood an evaluation is always running
        (it goes on while events keep coming), and the pause lets deliveries gather as
        before. In scaled mode the evaluations run in other processes, out of sight."""
        end = time.monotonic() + pause
        if self._stop_event.wait(self.breath) or not self.rt.settings.embedded:
            self._stop_event.wait(max(0.0, end - time.monotonic()))
            return
        while not self._stop_event.is_set() and (left := end - time.monotonic()) > 0:
            if self.rt.delivered.wait(left) and not self.rt.evaluating:
                return
            # An evaluation is under way and takes what arrives meanwhile.
            self.rt.delivered.clear()

    def stop(self, timeout: float = 5) -> None:
        self._stop_event.set()
        self.rt.nudge.set()
        self.rt.delivered.set()
        if self.ident is not None:  # started
            self.join(timeout)


#: The queue whose jobs embedded mode's store process runs, when it runs one.
EVALUATE_QUEUE = "beacon-evaluate"


def queue_kinds(rt: Runtime, queue: str) -> frozenset[str]:
    """The outbox kinds whose jobs go to `queue`."""
    return frozenset(kind for kind, (name, _path) in rt.handlers.items() if name == queue)


@contextlib.contextmanager
def running(
    rt: Runtime, store_process: Callable[[Runtime], StoreProcess] | None = None
) -> Iterator[None]:
    """The background work of a `beacon serve` process while the block runs: the dispatcher
    ticker and, in embedded mode, the RQ worker threads (stopped, after their current job,
    when the block ends).

    `store_process`: in embedded mode, starts the store process (`engine.store_process`),
    which then commits the intake's batches and evaluates; this process dispatches and
    runs everything else."""
    threads = []
    started = None
    if rt.queues.embedded and store_process is not None:
        try:
            started = store_process(rt)
        except StoreProcessGone as exc:
            # Slower, not broken: this process commits and evaluates itself, as it did
            # before there was a store process.
            log.error("%s; committing and evaluating in the web process instead", exc)
        else:
            rt.store_process = started
    evaluation = queue_kinds(rt, EVALUATE_QUEUE) if started is not None else None
    if rt.queues.embedded:
        # Notifications get threads of their own: a slow receiver or provider holds one of
        # those, never the threads that evaluate events and render pages.
        others = tuple(
            n
            for n in QUEUE_NAMES
            if n != NOTIFY_QUEUE and not (started is not None and n == EVALUATE_QUEUE)
        )
        threads = rt.queues.start_threads(rt.settings.embedded_workers, others)
        threads += rt.queues.start_threads(
            rt.settings.embedded_notify_workers, (NOTIFY_QUEUE,), label="notify"
        )
    ticker = Ticker(rt, kinds=evaluation, others=evaluation is not None)
    ticker.start()
    try:
        yield
    finally:
        ticker.stop()
        rt.queues.stop_threads(threads)
        if started is not None:
            rt.store_process = None
            started.stop()


@contextlib.contextmanager
def evaluating(rt: Runtime) -> Iterator[None]:
    """Embedded mode's store process: its evaluation threads and a dispatcher for their
    kinds alone, while the block runs (the web process dispatches the rest and fires the
    deadlines)."""
    threads = rt.queues.start_threads(rt.settings.embedded_workers, (EVALUATE_QUEUE,))
    ticker = Ticker(rt, kinds=queue_kinds(rt, EVALUATE_QUEUE), fire=False)
    ticker.start()
    try:
        yield
    finally:
        ticker.stop()
        rt.queues.stop_threads(threads)
