"""Handlers for the domain's own deadlines: maintenance steps, manual override expiry and
the re-check of verified custom domains.

Each runs in one transaction per payload and is idempotent: a maintenance step that already
happened is a no-op, and recomputing a status that is already right changes nothing.
"""

from __future__ import annotations

from typing import Any

from engine import domain_checks, domains, maintenance, status
from engine.runtime import Runtime


def handle_maintenance_start(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    for payload in payloads:
        with rt.store.begin() as conn:
            maintenance.start(conn, int(payload["window_id"]))


def handle_maintenance_end(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    for payload in payloads:
        with rt.store.begin() as conn:
            maintenance.complete(conn, int(payload["window_id"]))


def handle_override_expiry(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """An override's expiry passed: the service's status falls back to its other inputs."""
    ids = [int(p["service_id"]) for p in payloads]
    with rt.store.begin() as conn:
        status.recompute(conn, ids, cause_kind="expiry", cause={"override": "expired"})


def handle_domain_recheck(rt: Runtime, payloads: list[dict[str, Any]]) -> None:
    """The periodic re-check of verified custom domains (engine.domain_checks); it
    schedules the next one itself."""
    settings = rt.settings
    domain_checks.recheck(
        rt.store,
        base_url=settings.base_url,
        pages_domain=settings.pages_domain,
        resolver=domains.resolver_for(settings.dns_server),
    )
