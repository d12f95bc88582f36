"""The one place `apply` hands rule files to the rules package for checking.

The rules package owns the rule language; `apply` only collects the files (sorted, relative
to the config file), tells the checker which keys exist in which team, and stores the texts
as a new `rule_sets` version when they changed (contracts.md, "Rules <-> apply").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import rulesets
from engine.errors import ConfigError
from engine.rulesets import StoredRules
from engine.tables import rule_sets
from rules.schema import Rule
from rules.validate import (
    Known,
    LocatedRule,
    RulesInvalid,
    check,
    digest,
    stored_spec,
)

from .plan import Change


def find_rule_files(base: Path, patterns: Sequence[str]) -> tuple[list[Path], list[str], list[str]]:
    """The files the globs name in sorted path order, errors, and a warning per glob that
    matches nothing (like a shell's nullglob: an empty rules directory is a valid start)."""
    found: set[Path] = set()
    errors: list[str] = []
    warnings: list[str] = []
    for pattern in patterns:
        if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            errors.append(f"rules glob {pattern!r} must stay inside the config file's directory")
            continue
        matches = [p for p in base.glob(pattern) if p.is_file()]
        if not matches:
            warnings.append(f"rules glob {pattern!r} matches no file")
        found.update(matches)
    return sorted(found), errors, warnings


def check_rules(files: Mapping[str, str], known: Known) -> None:
    """Validate the rule texts ({path relative to the config file: text}) against the keys
    each team has; `ConfigError` lists every problem as `file:line:column: [rule] message`."""
    try:
        check(dict(files), known)
    except RulesInvalid as exc:
        raise ConfigError("\n".join(str(p) for p in exc.problems)) from None


# --- whose rules: a rule set is the union of every team's rule files ------------------------


@dataclass
class RuleSetPlan:
    """What storing one file's rules makes of the rule set in force.

    Rules belong to the teams of the config file that declares them (`Desired.teams_declared`):
    applying a file replaces those teams' rules and leaves every other team's as they are.
    `files` and `owners` are the whole new rule set; `changes` name every rule added,
    changed or removed; `changed` says whether a new version must be stored."""

    files: dict[str, str]
    owners: dict[str, list[str]]
    changes: list[Change] = field(default_factory=list)
    changed: bool = False
    version: int = 0


@dataclass
class _Part:
    teams: frozenset[str] | None  # None: published without owners (every team)
    files: dict[str, str]


def _parts(found: StoredRules) -> list[_Part]:
    if not found.files:
        return []
    if found.owners is None:
        return [_Part(None, dict(found.files))]
    grouped: dict[frozenset[str] | None, dict[str, str]] = {}
    for name, text in found.files.items():
        owners = found.owners.get(name)
        grouped.setdefault(frozenset(owners) if owners else _EVERY_TEAM, {})[name] = text
    return [_Part(teams, files) for teams, files in grouped.items()]


#: Files of an owned version with no owners of their own (added in the admin web UI): they
#: hear every team, and applying a team's file leaves them alone.
_EVERY_TEAM = frozenset({"*"})


def _names(teams: frozenset[str], files: Mapping[str, str], taken: set[str]) -> dict[str, str]:
    """Stored names for a team's files: their paths, unless another team's file has one of
    them; then every file of the part is prefixed with the team (all of them, so the files
    keep their sorted order)."""
    label = sorted(teams)[0] if teams else "rules"
    for prefix in ("", f"{label}/", "+".join(sorted(teams)) + "/"):
        names = {prefix + path: path for path in files}
        if not set(names) & taken:
            return names
    raise ConfigError(f"rule files of team {label} collide with another team's")


def plan_rule_set(
    conn: Connection, teams: set[str], files: Mapping[str, str]
) -> tuple[RuleSetPlan, list[str]]:
    """The rule set after `teams`' rules become `files` ({path relative to the config
    file: text}, already checked), and every problem (as `path:line:column: message`)."""
    found = rulesets.in_force(conn)
    owned = frozenset(teams)
    kept: list[_Part] = []
    for part in _parts(found):
        if part.teams is None:
            continue  # a version stored before owners existed gives way to the first apply
        rest = part.teams if part.teams == _EVERY_TEAM else part.teams - owned
        if rest:
            kept.append(_Part(rest, part.files))
    merged: dict[str, str] = {}
    owners: dict[str, list[str]] = {}
    for part in kept:
        assert part.teams is not None
        for name, text in part.files.items():
            merged[name] = text
            if part.teams != _EVERY_TEAM:
                owners[name] = sorted(part.teams)
    names = _names(owned, files, set(merged))
    for name, path in names.items():
        merged[name] = files[path]
        owners[name] = sorted(owned)
    errors = _clashes(merged, owners, names)
    plan = RuleSetPlan(merged, owners)
    if errors:
        return plan, errors
    before = {
        r.rule.id: r
        for r in stored_spec(found.files or None, found.owners).rules
        # A legacy version's rules give way (listed as removed unless the file keeps them);
        # a file without owners in an owned version hears every team and stays.
        if (r.teams is None and found.owners is None) or (r.teams and r.teams & owned)
    }
    after = {r.rule.id: r for r in stored_spec(merged, owners).rules if r.teams == owned}
    plan.changes = _rule_changes(before, after, owned, names)
    newest = (
        found.version
        and conn.execute(
            sa.select(rule_sets.c.digest).where(rule_sets.c.version == found.version)
        ).scalar()
    )
    if not found.version or newest != digest(merged, owners):
        top = conn.execute(sa.select(sa.func.max(rule_sets.c.version))).scalar() or 0
        plan.changed = True
        plan.version = int(top) + 1
    return plan, errors


def _clashes(
    merged: dict[str, str], owners: dict[str, list[str]], names: dict[str, str]
) -> list[str]:
    """A rule id used by this file and by another team's rules (ids are unique across the
    whole rule set: activations and explanations name rules by id)."""
    try:
        stored_spec(merged, owners)
    except RulesInvalid as exc:
        errors = []
        for problem in exc.problems:
            if problem.file not in names:
                continue
            where = f"{names[problem.file]}:{problem.line}:{problem.column}"
            other = problem.message.removeprefix("duplicate rule id (also in ").rstrip(")")
            other_name = other.rsplit(":", 1)[0]
            whose = (
                f"the rules of team {', '.join(owners[other_name])}"
                if other_name in owners
                else "rules in force for every team"
            )
            errors.append(
                f"{where}: rule '{problem.rule_id}': rule id already used by {whose} "
                f"({other}); rule ids are unique across teams"
                if other_name in merged and other_name not in names
                else f"{where}: rule '{problem.rule_id}': {problem.message}"
            )
        return errors
    return []


def _rule_changes(
    before: Mapping[str, LocatedRule],
    after: Mapping[str, LocatedRule],
    owned: frozenset[str],
    names: Mapping[str, str],
) -> list[Change]:
    changes: list[Change] = []
    for rule_id, new in after.items():
        old = before.get(rule_id)
        path = names[new.file]
        if old is None:
            changes.append(Change("create", "rule", rule_id, note=path))
            continue
        fields = _changed_fields(old.rule, new.rule)
        if fields:
            changes.append(Change("update", "rule", rule_id, note=f"{', '.join(fields)} changed"))
    for rule_id, old in before.items():
        if rule_id in after:
            continue
        others = sorted(old.teams - owned) if old.teams is not None else []
        note = f"team {', '.join(others)} keeps it" if others else ""
        changes.append(Change("delete", "rule", rule_id, note=note))
    return changes


def _changed_fields(old: Rule, new: Rule) -> list[str]:
    was, now = old.model_dump(by_alias=True), new.model_dump(by_alias=True)
    return [name for name in now if was.get(name) != now[name]]
