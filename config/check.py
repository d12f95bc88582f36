"""Checking a config file: the one way `beacon apply`, `beacon rules check --config` and
`beacon rules test --config` read and check it.

The strict models (`config.models`) read the file; `config.desired` checks every
reference and builds what the file asks for, with the keys rules may name (`known`); the
rule files the file names are checked against those keys. Every problem is reported as
`file:line:column: message`, the same words whichever command asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from engine.errors import ConfigError

from .desired import Desired, build
from .load import read_config
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
    path: Path | str, conn: Connection | None = None, *, prune: bool = False
) -> CheckedConfig:
    """Read and check the config file at `path`, against the store when `conn` is given
    (else the file alone); `ConfigError` lists every problem found."""
    path = Path(path)
    config, locations = read_config(path)
    want, errors = build(conn, config, locations, path.resolve().parent, prune=prune)
    if want.rule_files is not None and not errors:
        try:
            check_rules(want.rule_files, want.known)
        except ConfigError as exc:
            errors.extend(rule_prefix(path) + line for line in str(exc).splitlines())
    if errors:
        raise ConfigError("\n".join(errors))
    return CheckedConfig(path, config, locations, want)
