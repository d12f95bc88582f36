"""The one place `apply` hands rule files to the rules package for checking.

The rules package owns the rule language; `apply` only collects the files (sorted, relative
to the config file), tells the checker which keys exist in which team, and stores the texts
as a new `rule_sets` version when they changed (contracts.md, "Rules <-> apply").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import ConfigError


@dataclass
class TeamKeys:
    services: set[str] = field(default_factory=set)
    templates: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    sources: dict[str, str] = field(default_factory=dict)  # source key -> source type


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


def check_rules(
    files: Mapping[str, str], known: Mapping[str, TeamKeys], paths: Sequence[Path] = ()
) -> None:
    """Validate the rule texts ({path relative to the config file: text}, read from `paths`)
    against the keys each team has; `ConfigError` lists every problem as
    `file:line:column: [rule] message`.

    Uses the rules package's checker: `rules.load_rule_files` (contracts.md) when it exists,
    else `rules.validate.check`; without the rules package only the YAML is checked.
    """
    try:
        import rules
    except ImportError:
        _check_yaml(files)
        return
    if hasattr(rules, "load_rule_files"):
        _check_with_loader(rules, paths, known)
        return
    try:
        from rules.validate import Known, RulesInvalid, check
        from rules.validate import TeamKeys as RulesTeamKeys
    except ImportError:
        _check_yaml(files)
        return
    rules_known = Known(
        teams={
            team: RulesTeamKeys(
                services=frozenset(k.services),
                templates=frozenset(k.templates),
                channels=frozenset(k.channels),
                sources=dict(k.sources),
            )
            for team, k in known.items()
        }
    )
    try:
        check(dict(files), rules_known)
    except RulesInvalid as exc:
        raise ConfigError("\n".join(str(p) for p in exc.problems)) from None


def _check_with_loader(rules: Any, paths: Sequence[Path], known: Mapping[str, TeamKeys]) -> None:
    rules_known = rules.Known(
        teams={
            team: rules.TeamKeys(
                services=set(k.services),
                templates=set(k.templates),
                channels=set(k.channels),
                sources=set(k.sources),
            )
            for team, k in known.items()
        }
    )
    try:
        rules.load_rule_files(list(paths), rules_known)
    except rules.RuleErrors as exc:
        raise ConfigError("\n".join(str(e) for e in exc.errors)) from None


def _check_yaml(files: Mapping[str, str]) -> None:
    errors = []
    for name, text in sorted(files.items()):
        try:
            yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
            errors.append(f"{where}: invalid YAML: {exc.problem}")
        except yaml.YAMLError as exc:
            errors.append(f"{name}: invalid YAML: {exc}")
    if errors:
        raise ConfigError("\n".join(errors))


def digest(files: Mapping[str, str]) -> str:
    """A digest of the rule texts by relative path: equal texts, equal digest. The same
    formula as the rules package's own (`rules.validate.check`), so both agree on a set."""
    canonical = "\0".join(f"{name}\0{files[name]}" for name in sorted(files))
    return hashlib.sha256(canonical.encode()).hexdigest()
