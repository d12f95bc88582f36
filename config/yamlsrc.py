"""A YAML loader that remembers where every value came from and rejects duplicate keys.

`load(text, filename)` returns plain Python values plus a `Locations` map from a value's
path (`("services", 0, "name")`) to its line and column, so errors found later (by pydantic
or by reference checks) can say `beacon.yaml:12:5: ...`. PyYAML's own loader silently keeps
the last of two equal keys; a config file with a duplicated key is almost always a mistake,
so here it is an error.

Aliases are followed (`*a` builds its anchor's value again), so a few hundred bytes of
nested aliases can stand for billions of values (the "billion laughs"): before building
anything the loader counts what the file would build and refuses more than `MAX_NODES`,
naming the value that went past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.errors import ConfigError

Path = tuple[str | int, ...]

#: The most values (mappings, lists, scalars, keys) one file may build, aliases followed:
#: far above any real config (10,000 services is some 100,000), far below what hurts.
MAX_NODES = 500_000


@dataclass
class Locations:
    """Line and column (1-based) of each value, and of each mapping key, by path."""

    filename: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Sequence[str | int]) -> str:
        """`file:line:column` of `path`, or of its nearest recorded ancestor."""
        probe = tuple(path)
        while probe and probe not in self.values:
            probe = probe[:-1]
        line, column = self.values.get(probe, (1, 1))
        return f"{self.filename}:{line}:{column}"


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, locations: Locations) -> None:
        self.loader = loader
        self.locations = locations
        self.errors: list[str] = []

    def build(self, node: Node, path: Path) -> Any:
        self.locations.values.setdefault(path, _mark(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self.loader.flatten_mapping(node)  # resolves `<<` merge keys, placing them first
        merged = len(node.value) - own
        result: dict[Any, Any] = {}
        seen: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.build(key_node, (*path, "<key>"))
            if not isinstance(key, str | int | bool | float) or key is None:
                line, column = _mark(key_node)
                self.errors.append(f"{self.locations.filename}:{line}:{column}: keys must be text")
                continue
            key = str(key) if not isinstance(key, str) else key
            if index >= merged:
                # A key written twice is an error; a key overriding a merged one is the point
                # of `<<`.
                if key in seen:
                    line, column = _mark(key_node)
                    self.errors.append(
                        f"{self.locations.filename}:{line}:{column}: duplicate key {key!r}"
                    )
                    continue
                seen.add(key)
            elif key in result:
                continue  # an earlier merged mapping wins over a later one, as in YAML
            # The key's own position: "unknown field 'stauts'" points at the key itself.
            result[key] = self.build(value_node, (*path, key))
            self.locations.values[(*path, key)] = _mark(key_node)
        self.locations.values.pop((*path, "<key>"), None)
        return result


def _expanded(node: Node, sizes: dict[int, int], filename: str) -> int:
    """How many values `node` builds, aliases followed, counted once per distinct node (so
    in time linear in the file); raises `ConfigError` at the innermost node past
    `MAX_NODES`."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, MappingNode):
        for key, value in node.value:
            size += _expanded(key, sizes, filename) + _expanded(value, sizes, filename)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            size += _expanded(item, sizes, filename)
    if size > MAX_NODES:
        line, column = _mark(node)
        raise ConfigError(
            f"{filename}:{line}:{column}: this value expands to more than {MAX_NODES:,} values "
            "(aliases nested too far?)"
        )
    sizes[id(node)] = size
    return size


def load(text: str, filename: str) -> tuple[Any, Locations]:
    """Parse `text`; raises `ConfigError` naming file, line and column on bad YAML."""
    locations = Locations(filename)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, locations
        _expanded(node, {}, filename)
        builder = _Builder(loader, locations)
        value = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{filename}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    if builder.errors:
        raise ConfigError("\n".join(builder.errors))
    return value, locations
