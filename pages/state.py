"""What the web layer keeps per process: named, typed fields instead of string keys.

One `PagesState` per process, found with `of(runtime)` (`engine.runtime.Runtime.part`): the
render jobs reach the page cache through the runtime, and in embedded mode they run in the
web process, so these live with the runtime rather than on one app. What one app opens and
closes (the SNS HTTP client) is on that app instead (`pages.sns.http_client`).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.rejections import Throttle
from engine.runtime import Runtime

if TYPE_CHECKING:
    import dns.resolver

    from engine.event_writer import EventWriter
    from engine.sources import Source

    from .cache import PageCache
    from .export import Exporter
    from .live import LiveHub
    from .sns import SigningCertificate
    from .unmatched import RulesInForce


@dataclass
class PagesState:
    """The web layer's per-process caches and shared objects; each is made by the module
    that uses it, on first use."""

    #: Rendered pages (`pages.cache.for_runtime`).
    page_cache: PageCache | None = None
    #: Where rendered pages are exported as static files (`pages.export.exporter`).
    exporter: Exporter | None = None
    #: The live-update hub of each event loop (`pages.live.hub_for`).
    live_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveHub] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    #: Integration key -> (source or None, expiry on the monotonic clock) (`pages.intake`).
    sources: dict[str, tuple[Source | None, float]] = field(default_factory=dict)
    #: The intake's group-commit writer (`pages.intake.writer`).
    event_writer: EventWriter | None = None
    #: SNS signing certificates by URL, and the operator's trust files by path (`pages.sns`).
    sns_certs: dict[str, SigningCertificate] = field(default_factory=dict)
    sns_files: dict[Path, bytes] = field(default_factory=dict)
    #: The rules in force as `pages.unmatched` explains them (validated once per version).
    rules_in_force: RulesInForce | None = None
    #: How many refused deliveries this process records a second (`pages.intake`).
    refusals: Throttle = field(default_factory=lambda: Throttle())
    #: Where custom-domain checks ask DNS; None: the settings' server (tests set a loopback one).
    dns_resolver: dns.resolver.Resolver | None = None
    #: Guards what is made on first use by several threads at once.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def of(runtime: Runtime) -> PagesState:
    """The web layer's state in `runtime`'s process."""
    return runtime.part(PagesState)
