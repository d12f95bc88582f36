"""How the parts of a Beacon process fit together: the one place that knows both `pages`
and `workers`.

- `handlers()`: the dispatcher's registry of outbox handlers, the workers' own jobs
  (`workers.dispatch.HANDLERS`) and the pages' renders (`pages.render.HANDLERS`);
- `build_runtime()`: a process's `Runtime` with that registry;
- `app()`: the Starlette app, with the dispatcher and, in embedded mode, the RQ worker
  threads running beside it for its lifetime when `background` is set.
"""

from __future__ import annotations

import os
import sys

from starlette.applications import Starlette

from engine.queue import Queues
from engine.runtime import Runtime
from engine.settings import Settings
from engine.store_process import StoreProcess


def handlers() -> dict[str, tuple[str, str]]:
    """Outbox kind -> (queue, "module:function"), every kind a Beacon process handles."""
    from pages.render import HANDLERS as RENDER_HANDLERS
    from workers.dispatch import HANDLERS as WORKER_HANDLERS

    return {**WORKER_HANDLERS, **RENDER_HANDLERS}


def build_runtime(settings: Settings, queues: Queues | None = None) -> Runtime:
    """A process's runtime (store, queues, handlers) for `settings`."""
    return Runtime.build(settings, handlers(), queues)


def app(runtime: Runtime, *, background: bool = False) -> Starlette:
    """The app for `runtime`; with `background`, the dispatcher (and, in embedded mode, the
    worker threads and the store process) run from the app's start-up to its shutdown."""
    from pages.app import create_app
    from workers.dispatch import running

    starts = None
    if background and uses_store_process(runtime):
        # Started now, so that it starts up while this process does; the lifespan waits
        # until it is ready.
        spawned = store_process(runtime)
        spawned.spawn()

        def starts(_rt: Runtime) -> StoreProcess:
            spawned.wait_ready()
            return spawned

    return create_app(
        runtime, background=(lambda: running(runtime, starts)) if background else None
    )


def uses_store_process(runtime: Runtime) -> bool:
    """Whether this embedded web process commits and evaluates in a store process: on a
    SQLite file, unless BEACON_STORE_PROCESS=0."""
    database = runtime.store.engine.url.database
    return bool(
        runtime.settings.embedded
        and runtime.settings.store_process
        and runtime.store.dialect == "sqlite"
        and database
        and database != ":memory:"
    )


def store_process(runtime: Runtime) -> StoreProcess:
    """The store process of this web process (`cli.store_process`), not started yet."""

    def lost() -> None:
        # Nothing can be committed any more: end as a crash would, and `beacon serve`
        # with this process (docs/operations.md, "The HTTP server").
        os._exit(1)

    return StoreProcess(
        [sys.executable, "-m", "cli.store_process"],
        runtime.settings,
        on_nudge=runtime.nudge.set,
        on_lost=lost,
    )
