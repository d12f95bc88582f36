"""Rule set versions in the store (`rule_sets`): which version is in force, and its files.

The rule language is `rules`' business; this module reads the stored texts, for the
evaluator (`workers.evaluate`) and for explanations (`pages.unmatched`), and publishes a
new version (`publish`, for the admin web UI and `beacon apply`). A version's `owners` say
which teams each file's rules are for (`beacon apply` records the teams of the config file
that declared them); a file without owners (or a version without any) hears every team's
sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import crud, outbox
from .tables import alert_sources, channels, incident_templates, rule_sets, services, teams

# The version in force; its files are read only when a process does not have it yet
# (every evaluate and tick job asks, and the files of 1,000 rules are large).
VERSION_IN_FORCE = (
    sa.select(rule_sets.c.version)
    .where(rule_sets.c.active.is_(True))
    .order_by(rule_sets.c.version.desc())
    .limit(1)
)


@dataclass(frozen=True)
class StoredRules:
    """One stored version: its files (name -> text) and, per file, the teams it is for
    (None: published without owners, every file for every team)."""

    version: int
    files: dict[str, str] = field(default_factory=dict)
    owners: dict[str, list[str]] | None = None


def version_in_force(conn: Connection) -> int:
    """The newest active rule set version; 0 when none was ever published."""
    return int(conn.execute(VERSION_IN_FORCE).scalar() or 0)


def stored_files(conn: Connection, version: int) -> dict[str, str] | None:
    """The files (path -> text) of rule set `version`; None for version 0 or a missing one."""
    found = stored(conn, version)
    return found.files or None


def stored(conn: Connection, version: int) -> StoredRules:
    """Rule set `version` with its owners; empty for version 0 or a missing one."""
    if not version:
        return StoredRules(0)
    row = conn.execute(
        sa.select(rule_sets.c.files, rule_sets.c.owners).where(rule_sets.c.version == version)
    ).first()
    if row is None:
        return StoredRules(0)
    owners = (
        {str(name): [str(t) for t in teams] for name, teams in row.owners.items()}
        if row.owners is not None
        else None
    )
    return StoredRules(version, dict(row.files or {}), owners)


def in_force(conn: Connection) -> StoredRules:
    """The version in force with its files and owners."""
    return stored(conn, version_in_force(conn))


#: The outbox kind that tells every process to load the new version (`config.apply` emits
#: the same string when `beacon apply` stores rules).
RULES_CHANGED = "rules.changed"


def publish(
    conn: Connection,
    files: Mapping[str, str],
    digest: str,
    *,
    actor: str,
    owners: Mapping[str, list[str]] | None = None,
    rules: Mapping[str, list[str]] | None = None,
) -> int:
    """Store `files` (already validated by the rules package, which also made `digest`,
    over the files and `owners`) as the next version in force, audit it and tell the
    evaluators; returns the version. The admin web UI and `beacon apply` save rules through
    this; `rules` (the rule keys created, updated and deleted, by action) goes in the audit
    row when the caller knows it."""
    newest = conn.execute(sa.select(sa.func.max(rule_sets.c.version))).scalar() or 0
    version = int(newest) + 1
    conn.execute(
        rule_sets.insert().values(
            version=version,
            files=dict(files),
            owners=dict(owners) if owners is not None else None,
            digest=digest,
            active=True,
        )
    )
    detail: dict[str, Any] = {"files": sorted(files)}
    if rules is not None:
        detail["rules"] = {action: list(keys) for action, keys in rules.items()}
    crud.audit(conn, actor, "create", "rule set", f"version {version}", detail=detail)
    outbox.emit(conn, RULES_CHANGED, {"version": version})
    return version


#: The kinds of object a rule names, by their tables.
_NAMED = {
    "services": services,
    "incident_templates": incident_templates,
    "channels": channels,
    "alert_sources": alert_sources,
}


@dataclass(frozen=True)
class StoredKeys:
    """Every team's keys of the objects rules name (services, templates, channels, alert
    sources), as the store holds them, and each source's adapter type: what the rule
    checker is told exists (`rules.validate.known_keys`)."""

    teams: frozenset[str]
    keys: Mapping[str, Mapping[str, frozenset[str]]]  # kind -> team -> keys
    source_types: Mapping[tuple[str, str], str]  # (team, key) -> adapter type

    def of(self, kind: str, team: str) -> frozenset[str]:
        """The keys of `kind` in `team`."""
        return self.keys.get(kind, {}).get(team, frozenset())


def stored_keys(conn: Connection) -> StoredKeys:
    """What rules may name, per team, in the store (the web UI's rule editor, `beacon rules
    check` without `--config`, and `beacon apply`'s reading of the store)."""
    team_key = dict(conn.execute(sa.select(teams.c.id, teams.c.key)).all())
    keys: dict[str, dict[str, set[str]]] = {}
    for kind, table in _NAMED.items():
        found = keys[kind] = {}
        for team_id, key in conn.execute(sa.select(table.c.team_id, table.c.key)):
            found.setdefault(team_key[team_id], set()).add(key)
    types = conn.execute(
        sa.select(alert_sources.c.team_id, alert_sources.c.key, alert_sources.c.type)
    )
    return StoredKeys(
        teams=frozenset(team_key.values()),
        keys={k: {t: frozenset(v) for t, v in by.items()} for k, by in keys.items()},
        source_types={(team_key[t], k): kind for t, k, kind in types},
    )
