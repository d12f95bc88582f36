"""Reading a config file: YAML with positions, then the strict models, with every error
reported as `file:line:column: message`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.errors import ConfigError
from engine.models import readable

from .models import ConfigFile
from .yamlsrc import Locations, load

MAX_CONFIG_BYTES = 5 * 1024 * 1024


def _message(err: Any) -> str:
    loc = err["loc"]
    name = loc[-1] if loc else "file"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown field {name!r}"
    if kind == "missing":
        return f"missing field {name!r}"
    where = ".".join(str(p) for p in loc)
    message = readable(err)
    return f"{where}: {message}" if where else message


def read_config(path: Path) -> tuple[ConfigFile, Locations]:
    """The validated file and its positions; `ConfigError` lists every problem found."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the config file: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: the config file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    data, locations = load(text, name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}:1:1: the config file must be a mapping of kinds to lists")
    # Top-level `x-...` keys are free for YAML anchors (`x-defaults: &d {team: platform}`),
    # as in Compose files; everything else must be a known kind.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        return ConfigFile.model_validate(data), locations
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            # A missing field is reported where its object starts.
            at = locations.at(loc[:-1] if err["type"] == "missing" else loc)
            errors.append((at, f"{at}: {_message(err)}"))
        raise ConfigError("\n".join(text for _, text in _sorted(errors))) from None


def _sorted(errors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    def line_of(at: str) -> tuple[int, int]:
        parts = at.rsplit(":", 2)
        try:
            return int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            return 0, 0

    return sorted(errors, key=lambda e: line_of(e[0]))
