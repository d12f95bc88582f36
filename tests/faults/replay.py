"""The fault harness's reference: the stored event log replayed by a fresh single-process
Beacon, and the final state (service statuses, incidents) of a store, to compare the two.

The replay takes every row of `alert_events` from the faulted store, in id order, and
writes it unevaluated into a fresh embedded (SQLite) store to which the same config file
(with its rules) was applied; then each source's partition is evaluated by
`workers.evaluate.evaluate_partition`, the function Beacon's workers run, and the clock is
run to now (`workers.evaluate.tick`), as a worker's deadline would. What the faults may
have changed (processes killed mid-batch, retried outbox rows, Redis or PostgreSQL away)
must leave the store as this one process, which saw no fault, leaves its own.

A single-process Beacon evaluates each partition in id order (SQLite assigns ids in
commit order); partitions are independent but for the clock, which runs on the events'
`received_at`, so the order between partitions changes nothing.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from config import apply_file
from engine import events, migrate, sources
from engine.db import Store, create_store
from engine.events import TEST_OUTCOME
from engine.settings import Settings
from engine.tables import (
    alert_events,
    alert_sources,
    incident_services,
    incidents,
    rule_sets,
    services,
    teams,
    utcnow,
)
from workers.evaluate import evaluate_partition, rules_runtime, tick

#: Rows copied per transaction.
CHUNK = 1000

#: One incident as compared: title, status, impact, and its components with their impact.
Incident = tuple[str, str, str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Final:
    """What the events made of a store: each service's status (`team/service`) and every
    incident, open or resolved."""

    statuses: dict[str, str]
    incidents: Counter[Incident]

    @property
    def open(self) -> int:
        return sum(n for i, n in self.incidents.items() if i[1] != "resolved")

    def differences(self, reference: Final) -> list[str]:
        """Where this state differs from `reference`, in words (empty: the same)."""
        found = [
            f"{key}: {self.statuses.get(key, '-')} (replay {reference.statuses.get(key, '-')})"
            for key in sorted(set(self.statuses) | set(reference.statuses))
            if self.statuses.get(key) != reference.statuses.get(key)
        ]
        total, expected = sum(self.incidents.values()), sum(reference.incidents.values())
        if total != expected:
            found.append(f"{total} incidents (replay {expected})")
        extra = self.incidents - reference.incidents
        missing = reference.incidents - self.incidents
        found += [f"extra {_incident(i)} x{n}" for i, n in sorted(extra.items())]
        found += [f"missing {_incident(i)} x{n}" for i, n in sorted(missing.items())]
        return found


def _incident(incident: Incident) -> str:
    title, status, impact, components = incident
    parts = ", ".join(f"{key} {impact}" for key, impact in components)
    return f"{title!r} {status} impact {impact} [{parts}]"


def final_state(store: Store) -> Final:
    """The service statuses and incidents in `store`."""
    with store.read() as conn:
        statuses = {
            f"{team}/{key}": status
            for team, key, status in conn.execute(
                sa.select(teams.c.key, services.c.key, services.c.status).join(
                    teams, teams.c.id == services.c.team_id
                )
            )
        }
        components: dict[int, list[tuple[str, str]]] = {}
        for incident_id, key, impact in conn.execute(
            sa.select(
                incident_services.c.incident_id, services.c.key, incident_services.c.impact
            ).join(services, services.c.id == incident_services.c.service_id)
        ):
            components.setdefault(incident_id, []).append((key, impact))
        found: Counter[Incident] = Counter(
            (row.title, row.status, row.impact, tuple(sorted(components.get(row.id, []))))
            for row in conn.execute(
                sa.select(incidents.c.id, incidents.c.title, incidents.c.status, incidents.c.impact)
            )
        )
    return Final(statuses, found)


def replay(log: Store, config: Path, directory: Path) -> Final:
    """The final state of a fresh embedded Beacon in `directory` with `config` applied,
    after it evaluated every event stored in `log`. Raises `AssertionError` when the
    config's rules are not the ones `log` evaluated with."""
    directory.mkdir(parents=True, exist_ok=True)
    # synchronous=OFF: a throwaway store, whose evaluation transactions (hundreds: each
    # is bounded in time) need no disk flush each.
    settings = Settings(
        data_dir=directory, secret_key=SecretStr(secrets.token_hex(32)), sqlite_synchronous="OFF"
    )
    fresh = create_store(settings)
    try:
        migrate.upgrade(fresh)
        apply_file(fresh, config)
        _same_rules(log, fresh)
        partitions = _copy_log(log, fresh)
        runtime = rules_runtime(fresh)
        for partition in sorted(partitions):
            evaluate_partition(fresh, runtime, partition)
        tick(fresh, runtime, utcnow())
        with fresh.read() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).where(alert_events.c.evaluated_at.is_(None))
            ).scalar_one()
        assert left == 0, f"the replay left {left} events unevaluated"
        return final_state(fresh)
    finally:
        fresh.dispose()


def _same_rules(log: Store, fresh: Store) -> None:
    def digests(store: Store) -> list[str]:
        with store.read() as conn:
            return list(
                conn.execute(sa.select(rule_sets.c.digest).order_by(rule_sets.c.version)).scalars()
            )

    logged, applied = digests(log), digests(fresh)
    assert applied and logged and applied[-1] == logged[-1], (
        f"the replay's rules ({applied}) are not the log's ({logged})"
    )


def _sources(store: Store) -> dict[int, tuple[str, str]]:
    with store.read() as conn:
        return {
            row.id: (row.team, row.key)
            for row in conn.execute(
                sa.select(alert_sources.c.id, alert_sources.c.key, teams.c.key.label("team")).join(
                    teams, teams.c.id == alert_sources.c.team_id
                )
            )
        }


#: What the replay copies of each stored event: every column the intake writes (the event
#: writer's own list, so a column added there is copied too) but those the fresh store
#: makes itself (its own source id and partition) and the evaluation's results.
_COPIED = tuple(
    name
    for name in events._COLUMNS
    if name not in {"source_id", "partition", "evaluated_at", "outcome"}
)


def _copy_log(log: Store, fresh: Store) -> set[str]:
    """Every event of `log`, in id order, written unevaluated into `fresh` (a test
    delivery as the intake writes it: never evaluated); returns the partitions written."""
    theirs = _sources(log)
    with fresh.read() as conn:
        ours = {
            (team, key): found
            for team, key in set(theirs.values())
            for found in sources.find_by_key(conn, key, None, team)
        }
    partitions: set[str] = set()
    after = 0
    while True:
        with log.read() as conn:
            rows = conn.execute(
                sa.select(alert_events.c.id, alert_events.c.source_id, *_columns())
                .where(alert_events.c.id > after)
                .order_by(alert_events.c.id)
                .limit(CHUNK)
            ).all()
        if not rows:
            return partitions
        copies: list[dict[str, Any]] = []
        for row in rows:
            source = ours[theirs[row.source_id]]
            copy = {name: getattr(row, name) for name in _COPIED}
            copy["source_id"] = source.id
            copy["partition"] = source.partition
            copy["evaluated_at"] = row.received_at if row.test else None
            copy["outcome"] = dict(TEST_OUTCOME) if row.test else None
            partitions.add(copy["partition"])
            copies.append(copy)
        with fresh.begin() as conn:
            conn.execute(alert_events.insert(), copies)
        after = rows[-1].id


def _columns() -> list[sa.Column[Any]]:
    return [alert_events.c[name] for name in _COPIED]
