"""How the parts of a Beacon process fit together: the one place that knows both `pages`
and `workers`.

- `handlers()`: the dispatcher's registry of outbox handlers, the workers' own jobs
  (`workers.dispatch.HANDLERS`) and the pages' renders (`pages.render.HANDLERS`);
- `build_runtime()`: a process's `Runtime` with that registry;
- `app()`: the Starlette app, with the dispatcher and, in embedded mode, the RQ worker
  threads running beside it for its lifetime when `background` is set.
"""

from __future__ import annotations

from starlette.applications import Starlette

from engine.queue import Queues
from engine.runtime import Runtime
from engine.settings import Settings


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
    worker threads) run from the app's start-up to its shutdown."""
    from pages.app import create_app
    from workers.dispatch import running

    return create_app(runtime, background=(lambda: running(runtime)) if background else None)
