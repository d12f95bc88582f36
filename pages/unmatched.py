"""Why no rule matched an event: the rules in force, explained against it (`rules.explain`).

Asked for by the source's events API (`pages.sources_api`) and `beacon events tail`; worked
out when asked, never stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from engine import rulesets
from engine.activations.lookups import row_event
from engine.db import Store
from engine.models import EventStatus
from engine.runtime import Runtime
from engine.tables import alert_sources, teams
from rules.explain import Explanation, explain
from rules.validate import LocatedRule, stored_spec

from .state import of as pages_state

log = logging.getLogger(__name__)


class RulesInForce:
    """The rule set in force and its rules, read from the stored files and validated once
    per version (not compiled for the engine: a web process in scaled mode never evaluates,
    and need not compile). One per process (`pages.state.PagesState.rules_in_force`), or
    one per `beacon events tail`."""

    def __init__(self) -> None:
        self._cached: tuple[int, tuple[LocatedRule, ...]] | None = None

    @property
    def version(self) -> int | None:
        """The version last read, if any."""
        return None if self._cached is None else self._cached[0]

    def get(self, store: Store) -> tuple[int, tuple[LocatedRule, ...]]:
        """The version in force and its rules."""
        with store.read() as conn:
            version = rulesets.version_in_force(conn)
            cached = self._cached
            if cached is not None and cached[0] == version:
                return cached
            found = rulesets.stored(conn, version)
            rules = stored_spec(found.files, found.owners).rules
        self._cached = (version, rules)
        return version, rules


def for_runtime(runtime: Runtime) -> RulesInForce:
    """This process's `RulesInForce`."""
    state = pages_state(runtime)
    with state.lock:
        if state.rules_in_force is None:
            state.rules_in_force = RulesInForce()
        return state.rules_in_force


def why_unmatched(
    store: Store, rules: RulesInForce, source_key: str, source_type: str, rows: Sequence[Any]
) -> dict[int, Explanation]:
    """For the firing events among `rows` (of one source) that no rule matched: why not, by
    the rules in force now (`rules.explain`), by event id. Nothing for other events, and
    nothing at all when the rules cannot be read: an explanation must never cost the
    answer it comes with."""
    unmatched = [
        r
        for r in rows
        if r.status == EventStatus.FIRING.value
        and isinstance(r.outcome, dict)
        and r.outcome.get("result") == "no_match"
    ]
    if not unmatched:
        return {}
    try:
        version, in_force = rules.get(store)
        # Only the rules of the source's team hear its events (`LocatedRule.teams`).
        team = _team_of_source(store, getattr(unmatched[0], "source_id", None))
        in_force = tuple(r for r in in_force if r.hears(team))
        return {
            row.id: explain(in_force, row_event(row, source_key, source_type), version)
            for row in unmatched
        }
    except Exception:
        log.warning("cannot explain unmatched events of source %r", source_key, exc_info=True)
        return {}


def _team_of_source(store: Store, source_id: int | None) -> str | None:
    if source_id is None:
        return None
    with store.read() as conn:
        key = conn.execute(
            sa.select(teams.c.key)
            .join(alert_sources, alert_sources.c.team_id == teams.c.id)
            .where(alert_sources.c.id == source_id)
        ).scalar()
    return str(key) if key is not None else None
