"""RQ queues on real Redis (scaled mode) or on an in-process Redis emulation (embedded mode).

Embedded mode runs `fakeredis` with Lua (RQ 3 needs EVALSHA) and worker threads inside
`beacon serve`. RQ's worker installs signal handlers, which only the main thread may do,
so `ThreadWorker` installs none and times jobs out with a timer instead of SIGALRM.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.timeouts import TimerDeathPenalty

from engine.settings import Settings

log = logging.getLogger(__name__)

#: Beacon's queues, most urgent first: a worker serves them in this order.
QUEUE_NAMES = ("beacon-evaluate", "beacon-render", "beacon-notify", "beacon-default")


class ThreadWorker(SimpleWorker):
    """An RQ worker that can run in a non-main thread (no signal handlers)."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        # Signals belong to the main thread; the embedded server stops workers through
        # `_stop_requested` instead.
        pass


class Queues:
    """Beacon's RQ queues on one Redis connection, with the key prefix of this deployment."""

    def __init__(self, connection: redis.Redis, prefix: str = "", embedded: bool = False) -> None:
        self.connection = connection
        self.prefix = prefix
        self.embedded = embedded
        self.queues = {
            name: Queue(prefix + name, connection=connection, default_timeout=300)
            for name in QUEUE_NAMES
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> Queues:
        if settings.embedded:
            import fakeredis

            server = fakeredis.FakeServer()
            return cls(fakeredis.FakeRedis(server=server), settings.redis_prefix, embedded=True)
        return cls(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)

    def queue(self, name: str) -> Queue:
        return self.queues[name]

    def job_id(self, value: str) -> str:
        """A job id carrying the deployment's prefix (keeps tests' jobs apart on one Redis)."""
        return f"{self.prefix}{value}".replace(":", "-")

    def enqueue(
        self, queue: str, func: str, *args: Any, job_id: str | None = None, **options: Any
    ) -> None:
        self.queues[queue].enqueue(
            func, *args, job_id=self.job_id(job_id) if job_id else None, **options
        )

    def ping(self) -> bool:
        try:
            return bool(self.connection.ping())
        except redis.RedisError:
            return False

    def worker(
        self, name: str | None = None, worker_class: type[SimpleWorker] = SimpleWorker
    ) -> SimpleWorker:
        return worker_class(
            [self.queues[n] for n in QUEUE_NAMES], connection=self.connection, name=name
        )

    def start_threads(self, count: int) -> list[tuple[threading.Thread, SimpleWorker]]:
        """Start `count` worker threads (embedded mode); stop them with `stop_threads`."""
        started = []
        for index in range(count):
            worker = self.worker(worker_class=ThreadWorker)
            thread = threading.Thread(
                target=worker.work,
                kwargs={"logging_level": "WARNING"},
                name=f"beacon-worker-{index}",
                daemon=True,
            )
            thread.start()
            started.append((thread, worker))
        return started

    def stop_threads(
        self, threads: list[tuple[threading.Thread, SimpleWorker]], timeout: float = 10
    ) -> None:
        """Stop worker threads after their current job. RQ's dequeue loop looks at the stop
        flag only between jobs, so each idle thread is woken with a job that does nothing."""
        if not threads:
            return
        for _thread, worker in threads:
            worker._stop_requested = True
        for index in range(len(threads)):
            # One by one: fakeredis does not wake a blocked BLPOP for a pipelined push.
            self.enqueue(QUEUE_NAMES[0], "workers.queue.wake", job_id=f"wake-{index}")
        for thread, _worker in threads:
            thread.join(timeout)


def wake() -> None:
    """A job that does nothing: it lets an idle worker thread see its stop request."""
