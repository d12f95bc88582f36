"""Keeping a lease alive while long work runs."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def renewing(renew: Callable[[], None], every: float) -> Iterator[None]:
    """Call `renew` every `every` seconds while the block runs, from a thread of its own, so
    that work longer than its lease is not taken over by another worker meanwhile. Best
    effort: a failed renewal is logged (the next one may succeed; at worst the work is
    taken over, which the conditional claims make harmless)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                renew()
            except Exception:
                log.warning("could not renew a lease", exc_info=True)

    thread = threading.Thread(target=beat, name="beacon-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
