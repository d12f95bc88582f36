"""Why no rule matched an event: the rules in force, explained against it (`rules.explain`).

Asked for by the source's events API (`pages.sources_api`) and `beacon events tail`; worked
out when asked, never stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from engine import rulesets
from engine.activations_store import row_event
from engine.db import Store
from engine.models import EventStatus
from rules.explain import Explanation, explain
from rules.runtime import RuleRuntime
from rules.validate import LocatedRule, stored_spec

log = logging.getLogger(__name__)

#: The process's compiled rules in its extras (`workers.evaluate.EXTRA_KEY`), when it has them.
RULES_KEY = "rules"
#: `rules_in_force`'s cache in a process's extras: (version, rules).
SPEC_KEY = "rules.spec"


def rules_in_force(store: Store, extras: dict[str, Any]) -> tuple[int, tuple[LocatedRule, ...]]:
    """The version in force and its rules, without compiling them for the engine: the book
    this process holds for that version, else the stored files, validated once per version
    (a web process in scaled mode never evaluates, and need not compile)."""
    with store.read() as conn:
        version = rulesets.version_in_force(conn)
        runtime = extras.get(RULES_KEY)
        book = runtime.book if isinstance(runtime, RuleRuntime) else None
        if book is not None and book.version == version:
            return version, book.spec.rules
        cached = extras.get(SPEC_KEY)
        if cached is not None and cached[0] == version:
            return cached
        rules = stored_spec(rulesets.stored_files(conn, version)).rules
    extras[SPEC_KEY] = (version, rules)
    return version, rules


def why_unmatched(
    store: Store, extras: dict[str, Any], source_key: str, source_type: str, rows: Sequence[Any]
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
        version, rules = rules_in_force(store, extras)
        return {
            row.id: explain(rules, row_event(row, source_key, source_type), version)
            for row in unmatched
        }
    except Exception:
        log.warning("cannot explain unmatched events of source %r", source_key, exc_info=True)
        return {}
