"""The one place `apply` hands rule files to the rules package for checking.

The rules package owns the rule language; `apply` only collects the files (sorted, relative
to the config file), tells the checker which keys exist in which team, and stores the texts
as a new `rule_sets` version when they changed (contracts.md, "Rules <-> apply").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError
from rules.validate import Known, RulesInvalid, check
from rules.validate import TeamKeys as RulesTeamKeys


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


def check_rules(files: Mapping[str, str], known: Mapping[str, TeamKeys]) -> None:
    """Validate the rule texts ({path relative to the config file: text})
    against the keys each team has; `ConfigError` lists every problem as
    `file:line:column: [rule] message`.

    """
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
