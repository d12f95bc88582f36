"""The process's shared resources (settings, store, queues), set up once at start.

RQ job functions take ids and plain values; the connections they need are per process, so
`beacon serve` and `beacon worker` install a `Runtime` before any job runs and jobs ask for
it with `current()`. Opening a database pool per job would cost more than the job.

It lives in `engine` because both `pages` (the app, and the render jobs) and `workers` (the
dispatcher and the other jobs) use it, and they never import each other; `cli` builds it,
with the outbox handlers of both (`cli.wiring`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.db import Store, create_store
from engine.settings import Settings

from .queue import Queues
from .store_process import StoreProcess

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    queues: Queues
    #: Outbox kind -> (queue, "module:function") of its handler (`workers.dispatch`); the
    #: composition root (`cli.wiring.handlers`) puts the workers' and the pages' together.
    handlers: Mapping[str, tuple[str, str]]
    #: Unique per process: names outbox claims and workers.
    name: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )
    #: Set to wake the dispatcher at once after a commit that emitted outbox rows.
    nudge: threading.Event = field(default_factory=threading.Event)
    #: Set by the intake when deliveries need evaluating: it also ends the dispatcher's
    #: pause after a pass of follow-up work (`workers.dispatch.Ticker`).
    delivered: threading.Event = field(default_factory=threading.Event)
    #: Set after a job ran its handlers: embedded mode's store process tells its web
    #: process, whose dispatcher then takes the work they left (`engine.store_process`).
    worked: threading.Event = field(default_factory=threading.Event)
    #: Embedded mode's store process, while the app runs (`engine.store_process`).
    store_process: StoreProcess | None = None
    #: The process state of the layers above engine, one object per class (`part`).
    _parts: dict[type[Any], Any] = field(default_factory=dict, init=False, repr=False)
    _parts_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _evaluations: int = field(default=0, init=False, repr=False)
    _counter_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        handlers: Mapping[str, tuple[str, str]],
        queues: Queues | None = None,
    ) -> Runtime:
        return cls(
            settings, create_store(settings), queues or Queues.from_settings(settings), handlers
        )

    def part(self, kind: type[T]) -> T:
        """This process's one `kind` object, made by `kind()` on first use and shared by
        every thread.

        Engine cannot name the types of the layers above it (pages' caches, the rules'
        compiled book), so each layer declares its process state as a class of its own with
        named, typed fields (`pages.state.PagesState`, `rules.runtime.RuleRuntime`) and finds
        it here by that class: no string keys, and every reader sees the declared type.
        """
        found: T | None = self._parts.get(kind)
        if found is None:
            with self._parts_lock:
                found = self._parts.get(kind)
                if found is None:
                    found = self._parts[kind] = kind()
        return found

    def close(self) -> None:
        self.store.dispose()

    @property
    def evaluating(self) -> bool:
        """Whether a thread of this process is evaluating events (`evaluation`)."""
        return self._evaluations > 0

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        with self._counter_lock:
            self._evaluations += 1
        try:
            yield
        finally:
            with self._counter_lock:
                self._evaluations -= 1

    def delivery(self) -> None:
        """The intake committed deliveries that need evaluating: wake the dispatcher."""
        self.delivered.set()
        self.nudge.set()


_current: Runtime | None = None
_lock = threading.Lock()


def install(runtime: Runtime) -> Runtime:
    """Make `runtime` the one jobs of this process use."""
    global _current
    with _lock:
        _current = runtime
    return runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError(
            "no Beacon runtime installed in this process (beacon serve/worker do it)"
        )
    return _current


def uninstall() -> None:
    global _current
    with _lock:
        _current = None
