"""Checking a config file: the one way `beacon apply`, `beacon rules check --config` and
`beacon rules test --config` read and check it.

Every stage reports into one list, so a file with several mistakes is refused once with
all of them (issue 19): the strict models (`config.models`, each object on its own, in
`config.load`), then references, alert source types and settings, template syntax, pages
and assets (`config.desired`, which also gives the keys rules may name), then the rule
files the file names (`rules.validate`: fields, durations, references). Each problem is
`file:line:column: message`, with "did you mean" where a near name exists, in the same
words whichever command asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from engine.errors import ConfigError

from .desired import Desired, build
from .load import load_config
from .models import ConfigFile
from .rules import check_rules
from .yamlsrc import Locations


@dataclass(frozen=True)
class CheckedConfig:
    """A config file that passed every check: the model, its positions, what it asks for."""

    path: Path
    config: ConfigFile
    locations: Locations
    want: Desired

    def rule_file_name(self, name: str) -> str:
        """A rule file's name (relative to the config file) as messages show it."""
        return rule_prefix(self.path) + name


def rule_prefix(path: Path) -> str:
    """Rule files are named relative to the config file; messages show where they are."""
    return "" if str(path.parent) == "." else f"{path.parent}/"


def check_config(
    path: Path | str,
    conn: Connection | None = None,
    *,
    prune: bool = False,
    env: Mapping[str, str] | None = None,
    refuse_domain: Callable[[str], str | None] | None = None,
) -> CheckedConfig:
    """Read and check the config file at `path`, against the store when `conn` is given
    (else the file alone); `ConfigError` lists every problem found, of every stage. `env`
    is where `{env: NAME}` secrets are read (None: not read, as a check of the file alone);
    `refuse_domain` says why a custom domain can never be a page's (Beacon's own hosts)."""
    path = Path(path)
    loaded = load_config(path)
    base = path.resolve().parent
    want, found = build(
        conn,
        loaded.config,
        loaded.locations,
        base,
        prune=prune,
        broken=loaded.broken,
        env=env,
        refuse_domain=refuse_domain,
    )
    errors = _in_order(str(path), [*loaded.errors, *found])
    # Rules are checked whatever else is wrong (their keys include the objects the models
    # refused), unless the file has no team for them to belong to (an error of its own).
    if want.rule_files is not None and want.teams_declared:
        try:
            check_rules(want.rule_files, want.known)
        except ConfigError as exc:
            errors.extend(rule_prefix(path) + line for line in str(exc).splitlines())
    if errors:
        raise ConfigError("\n".join(errors))
    return CheckedConfig(path, loaded.config, loaded.locations, want)


_AT = re.compile(r"^(.*?):(\d+):(\d+): ")


def _in_order(name: str, errors: list[str]) -> list[str]:
    """The config file's problems by line and column (a stable sort: same place, same
    order as found), then any others."""

    def key(message: str) -> tuple[int, int, int]:
        found = _AT.match(message)
        if found is None or found[1] != name:
            return (1, 0, 0)
        return (0, int(found[2]), int(found[3]))

    return sorted(errors, key=key)
