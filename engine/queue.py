"""RQ queues on real Redis (scaled mode) or on an in-process Redis emulation (embedded mode).

Embedded mode runs `fakeredis` with Lua (RQ 3 needs EVALSHA) and worker threads inside
`beacon serve`. RQ's worker installs signal handlers, which only the main thread may do,
so `ThreadWorker` installs none and times jobs out with a timer instead of SIGALRM.

Redis is a dependency that may fail. Every client Beacon makes has a connect and a read
timeout (`BEACON_REDIS_TIMEOUT`) and at most one retry (redis-py's default is ten, with
backoff: a minute per call against a silent server). The request path talks to Redis
only through an asyncio client (`aconnection`), never blocking the event loop, and asks
`breaker` first: after a failure it leaves Redis alone for a second, so an outage costs
one timeout a second rather than one per request. RQ's worker gets a connection of its
own, since RQ raises its read timeout above the blocking dequeue's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.timeouts import TimerDeathPenalty

from engine.settings import Settings

log = logging.getLogger(__name__)

#: Beacon's queues, most urgent first: a worker serves them in this order.
QUEUE_NAMES = ("beacon-evaluate", "beacon-render", "beacon-notify", "beacon-default")

#: RQ's worker key lives this long without a heartbeat. RQ blocks in BLPOP for 15 s less
#: and reads with a timeout 10 s more than that: 55 s here, against 415 s by default, is
#: how long a silent Redis can hold a worker before it notices and reconnects.
WORKER_TTL = 60
#: After a failed Redis call the request path leaves Redis alone this long.
BREAKER_SECONDS = 1.0
#: The connection settings the clients copy from Beacon's sync connection.
_COPIED = ("host", "port", "db", "username", "password", "path", "client_name")


def client_options(timeout: float) -> dict[str, Any]:
    """Timeouts on connect and on every read, one retry (a pooled connection that died
    with a Redis restart fails once, then a fresh one is made), and a ping before reusing
    a connection idle for half a minute."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
    }


def _async_options(timeout: float) -> dict[str, Any]:
    return {**client_options(timeout), "retry": redis.asyncio.retry.Retry(NoBackoff(), 1)}


class Breaker:
    """Whether the request path should ask Redis now. Closed: yes. After a failure, open:
    no, for `cooldown` seconds; then one caller at a time probes, and its success closes
    it. A probe that never reports (its request was cancelled) expires after `cooldown`."""

    def __init__(self, cooldown: float = BREAKER_SECONDS) -> None:
        self.cooldown = cooldown
        self._open_until = 0.0
        self._probe_until = 0.0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """Whether the last call failed (and none succeeded since)."""
        return self._open_until != 0.0

    def allow(self) -> bool:
        if not self._open_until:
            return True
        now = time.monotonic()
        with self._lock:
            if now < self._open_until or now < self._probe_until:
                return False
            self._probe_until = now + self.cooldown
            return True

    def succeeded(self) -> None:
        if self._open_until:
            with self._lock:
                self._open_until = self._probe_until = 0.0

    def failed(self) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.cooldown
            self._probe_until = 0.0


class ThreadWorker(SimpleWorker):
    """An RQ worker that can run in a non-main thread (no signal handlers)."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        # Signals belong to the main thread; the embedded server stops workers through
        # `_stop_requested` instead.
        pass


class Queues:
    """Beacon's RQ queues on one Redis connection, with the key prefix of this deployment."""

    def __init__(
        self,
        connection: redis.Redis,
        prefix: str = "",
        embedded: bool = False,
        timeout: float = 1.0,
        url: str = "",
    ) -> None:
        self.connection = connection
        #: Where `connection` goes (`BEACON_REDIS_URL`); unset, its settings are copied.
        self.url = url
        self.prefix = prefix
        self.embedded = embedded
        self.timeout = timeout
        #: Shared by the request path's Redis calls in this process (`Breaker`).
        self.breaker = Breaker()
        self.queues = {
            name: Queue(prefix + name, connection=connection, default_timeout=300)
            for name in QUEUE_NAMES
        }
        # One asyncio client per event loop: a client's connections belong to the loop
        # that opened them (tests run several loops; `beacon serve` runs one).
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Queues:
        if settings.embedded:
            import fakeredis

            server = fakeredis.FakeServer()
            return cls(fakeredis.FakeRedis(server=server), settings.redis_prefix, embedded=True)
        timeout = settings.redis_timeout
        return cls(
            redis.Redis.from_url(settings.redis_url, **client_options(timeout)),
            settings.redis_prefix,
            timeout=timeout,
            url=settings.redis_url,
        )

    def aconnection(self) -> Any:
        """An asyncio client to the same Redis for the running event loop (made on first
        use; `aclose` closes it), with the same timeouts."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            if self.embedded:
                import fakeredis

                client = fakeredis.FakeAsyncRedis(
                    server=self.connection.connection_pool.connection_kwargs["server"]
                )
            elif self.url:
                client = redis.asyncio.Redis.from_url(self.url, **_async_options(self.timeout))
            else:
                client = redis.asyncio.Redis(**self._address(), **_async_options(self.timeout))
            self._async[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running loop's asyncio client (the app's lifespan ends)."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def worker_connection(self) -> redis.Redis:
        """A connection for RQ's worker alone: RQ raises its read timeout above the
        blocking dequeue's, which Beacon's own calls must not inherit."""
        if self.embedded:
            return self.connection
        if self.url:
            return redis.Redis.from_url(self.url, **client_options(self.timeout))
        return redis.Redis(**self._address(), **client_options(self.timeout))

    def _address(self) -> dict[str, Any]:
        """Where `connection` goes, for a client made without a URL (tests)."""
        kwargs = self.connection.connection_pool.connection_kwargs
        copied = {k: kwargs[k] for k in _COPIED if kwargs.get(k) is not None}
        if "path" in copied:
            copied["unix_socket_path"] = copied.pop("path")
        return copied

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

    async def aping(self) -> str:
        """ "ok", or why Redis did not answer a PING within the timeout."""
        try:
            await asyncio.wait_for(self.aconnection().ping(), self.timeout * 2)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    def worker(
        self,
        name: str | None = None,
        worker_class: type[SimpleWorker] = SimpleWorker,
        queue_names: tuple[str, ...] = QUEUE_NAMES,
    ) -> SimpleWorker:
        connection = self.worker_connection()
        queues = [
            Queue(self.prefix + n, connection=connection, default_timeout=300) for n in queue_names
        ]
        return worker_class(queues, connection=connection, name=name, worker_ttl=WORKER_TTL)

    def start_threads(
        self, count: int, queue_names: tuple[str, ...] = QUEUE_NAMES, label: str = "worker"
    ) -> list[tuple[threading.Thread, SimpleWorker]]:
        """Start `count` worker threads serving `queue_names` (embedded mode); stop them with
        `stop_threads`."""
        started = []
        for index in range(count):
            worker = self.worker(worker_class=ThreadWorker, queue_names=queue_names)
            thread = threading.Thread(
                target=worker.work,
                kwargs={"logging_level": "WARNING"},
                name=f"beacon-{label}-{index}",
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
        for index, (_thread, worker) in enumerate(threads):
            # One by one, on a queue the thread serves: fakeredis does not wake a blocked
            # BLPOP for a pipelined push.
            worker.queues[0].enqueue(
                "engine.queue.wake", job_id=self.job_id(f"wake-{worker.queues[0].name}-{index}")
            )
        for thread, _worker in threads:
            thread.join(timeout)


def wake() -> None:
    """A job that does nothing: it lets an idle worker thread see its stop request."""
