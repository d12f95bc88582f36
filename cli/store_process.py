"""Embedded mode's store process (`engine.store_process`): started by a web process of
`beacon serve`, never by hand. It commits the intake's batches and evaluates the events,
with a runtime of its own on the same database."""

from __future__ import annotations

import gc
import sys

from engine.runtime import Runtime, install
from engine.store_process import Child, serve
from workers.dispatch import HANDLERS, evaluating


def main(argv: list[str]) -> int:
    child = Child.attach(argv)
    # Evaluation's handlers only: this process never renders a page (pages' caches live in
    # the web process), so it imports none of the web layer.
    runtime = install(Runtime.build(child.settings, HANDLERS))
    gc.collect()
    gc.freeze()  # as the web process does (cli.main._settle_heap)
    child.forward(runtime.worked)
    try:
        with evaluating(runtime):
            with runtime.store.read() as conn:  # connected, and the database readable
                conn.exec_driver_sql("SELECT 1")
            child.ready()
            serve(child.commits, runtime.store, on_emit=runtime.delivery)
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
