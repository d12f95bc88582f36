"""Reading a config file: YAML with positions, then the strict models, with every error
reported as `file:line:column: message`.

Each object is checked on its own (`load_config`), so one bad service does not hide the
problems of the others, nor those later stages find (references, source settings, rules):
`config.check` reports them all in one run. An object the models refuse is left out of
what is built, but its key is remembered (`LoadedConfig.broken`) so that references to it
are not reported a second time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from engine.errors import ConfigError
from engine.models import readable
from rules.errors import did_you_mean

from .models import KIND_MODELS, SECRET_TAGS, ConfigFile
from .yamlsrc import Locations, load

MAX_CONFIG_BYTES = 5 * 1024 * 1024

_LIST = TypeAdapter(list[Any])
_RULE_GLOBS = TypeAdapter(list[str])


@dataclass
class Renumbered(Locations):
    """Positions of a file some of whose objects were left out: `kept[kind][i]` is the
    index in the file of the i-th object kept, so later errors point at the right line."""

    kept: dict[str, list[int]] = field(default_factory=dict)

    def at(self, path: Sequence[str | int]) -> str:
        if len(path) >= 2 and isinstance(path[0], str) and isinstance(path[1], int):
            kept = self.kept.get(path[0])
            if kept is not None and 0 <= path[1] < len(kept):
                path = (path[0], kept[path[1]], *path[2:])
        return super().at(path)


@dataclass
class LoadedConfig:
    """What the models accepted, where everything is, and every problem they found."""

    config: ConfigFile
    locations: Locations
    errors: list[str] = field(default_factory=list)
    #: Per kind, the (team, key) of objects the models refused (pages: (team, slug)).
    broken: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


def _message(err: Any, loc: tuple[Any, ...], fields: Sequence[str] = ()) -> str:
    """A model's error at `loc` (from the top of the file) in words; an unknown field of
    the object itself names the nearest of its `fields`."""
    name = loc[-1] if loc else "file"
    kind = err["type"]
    if kind == "extra_forbidden":
        hint = did_you_mean(str(name), fields) if len(err["loc"]) == 1 else ""
        return f"unknown field {name!r}{hint}"
    if kind == "missing":
        return f"missing field {name!r}"
    where = ".".join(str(p) for p in loc)
    message = readable(err)
    return f"{where}: {message}" if where else message


def load_config(path: Path) -> LoadedConfig:
    """Read the file and check each object with the models; `ConfigError` only when the
    file cannot be read as YAML at all (every other problem is in `errors`)."""
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
    data, located = load(text, name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}:1:1: the config file must be a mapping of kinds to lists")
    locations = Renumbered(located.filename, located.values)
    loaded = LoadedConfig(ConfigFile(), locations)
    errors: list[tuple[str, str]] = []

    def error(loc: tuple[Any, ...], message: str) -> None:
        at = locations.at(loc)
        errors.append((at, f"{at}: {message}"))

    kinds: dict[str, Any] = {}
    for kind, value in data.items():
        # Top-level `x-...` keys are free for YAML anchors (`x-defaults: &d {team: p}`), as
        # in Compose files; everything else must be a known kind.
        if isinstance(kind, str) and kind.startswith("x-"):
            continue
        if kind not in ConfigFile.model_fields:
            error((kind,), f"unknown field {kind!r}{did_you_mean(str(kind), KIND_MODELS)}")
            continue
        if value is None:
            continue
        if kind == "rules":
            kinds[kind] = _checked(_RULE_GLOBS, value, (kind,), error)
            continue
        items = _checked(_LIST, value, (kind,), error)
        if items is not None:
            kinds[kind] = _objects(loaded, kind, items, error)
    loaded.config = ConfigFile.model_construct(**kinds)
    loaded.errors = [message for _, message in _sorted(errors)]
    return loaded


def _checked(adapter: TypeAdapter[Any], value: Any, loc: tuple[Any, ...], error: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            error((*loc, *err["loc"]), f"{loc[0]}: {readable(err)}")
        return None


def _objects(loaded: LoadedConfig, kind: str, items: list[Any], error: Any) -> list[BaseModel]:
    model = KIND_MODELS[kind]
    fields = list(model.model_fields)
    kept: list[BaseModel] = []
    index: list[int] = []
    for i, item in enumerate(items):
        try:
            kept.append(model.model_validate(item))
            index.append(i)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                # A secret field's form (text or `{env: NAME}`) is no part of its place.
                err["loc"] = tuple(p for p in err["loc"] if p not in SECRET_TAGS)
                loc = (kind, i, *err["loc"])
                # A missing field is reported where its object starts.
                at = loc[:-1] if err["type"] == "missing" else loc
                error(at, _message(err, loc, fields))
            _remember(loaded, kind, item)
    assert isinstance(loaded.locations, Renumbered)
    loaded.locations.kept[kind] = index
    return kept


def _remember(loaded: LoadedConfig, kind: str, item: Any) -> None:
    """The key of an object the models refused, so references to it are not errors too."""
    if not isinstance(item, dict):
        return
    key = item.get("slug" if kind == "status_pages" else "key")
    if not isinstance(key, str):
        return
    if kind == "teams":
        team: Any = key
    elif kind == "status_pages":
        teams = item.get("teams")
        team = teams[0] if isinstance(teams, list) and teams else ""
    else:
        team = item.get("team")
    if isinstance(team, str):
        loaded.broken.setdefault(kind, set()).add((team, key))


def read_config(path: Path) -> tuple[ConfigFile, Locations]:
    """The validated file and its positions; `ConfigError` lists every problem the models
    find (references are checked later, by `config.check`)."""
    loaded = load_config(path)
    if loaded.errors:
        raise ConfigError("\n".join(loaded.errors))
    return loaded.config, loaded.locations


_AT = re.compile(r"^(.*):(\d+):(\d+)$")


def _sorted(errors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    def line_of(at: str) -> tuple[int, int]:
        found = _AT.match(at)
        return (int(found[2]), int(found[3])) if found else (0, 0)

    return sorted(errors, key=lambda e: line_of(e[0]))
