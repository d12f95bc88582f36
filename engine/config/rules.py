"""The one place `apply` hands rule files to the rules package for checking.

The rules package owns the rule language; `apply` only collects the files (sorted, relative
to the config file), tells the checker which keys exist in which team, and stores the texts
as a new `rule_sets` version when they changed (contracts.md, "Rules <-> apply").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError


@dataclass
class TeamKeys:
    services: set[str] = field(default_factory=set)
    templates: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)


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


def check_rules(paths: Sequence[Path], known: Mapping[str, TeamKeys]) -> None:
    """Validate the rule files against the keys each team has; `ConfigError` lists every
    problem as `file:line:column: [rule] message`."""
    try:
        from rules import Known, RuleErrors, load_rule_files  # type: ignore[attr-defined]
        from rules import TeamKeys as RulesTeamKeys  # type: ignore[attr-defined]
    except ImportError:
        # The rules package is not merged yet: check that the files are at least YAML.
        _check_yaml(paths)
        return
    rules_known = Known(
        teams={
            team: RulesTeamKeys(
                services=set(k.services),
                templates=set(k.templates),
                channels=set(k.channels),
                sources=set(k.sources),
            )
            for team, k in known.items()
        }
    )
    try:
        load_rule_files(list(paths), rules_known)
    except RuleErrors as exc:
        raise ConfigError("\n".join(str(e) for e in exc.errors)) from None


def _check_yaml(paths: Sequence[Path]) -> None:
    errors = []
    for path in paths:
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            errors.append(f"{where}: invalid YAML: {exc.problem}")
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            errors.append(f"{path}: cannot read rule file: {exc}")
    if errors:
        raise ConfigError("\n".join(errors))


def digest(files: Mapping[str, str]) -> str:
    """A digest of the rule texts by relative path: equal texts, equal digest."""
    canonical = json.dumps(sorted(files.items()), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
