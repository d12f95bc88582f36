"""A strict YAML reader that remembers where every value came from.

PyYAML's loaders silently keep the last of two equal keys; rule authors then wonder why
their first condition does nothing. This reader rejects duplicate keys and returns, next
to the plain data, the `line:column` of every mapping key and value by path, so that a
schema error deep inside a rule can still say where it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import RuleProblem

Path = tuple[Any, ...]
# Aliases can make a small document expand enormously ("billion laughs"); no rule file
# comes near this many values.
MAX_NODES = 200_000
# libyaml's parser is ~20x faster on large rule files and keeps the same marks.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Located:
    """Plain YAML data plus `line, column` (1-based) of each value and key by path."""

    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The position of the deepest known prefix of `path` (pydantic adds loc items that
        are not YAML paths, such as union tags; those are skipped)."""
        best = self.values.get((), (1, 1))
        known: Path = ()
        for item in path:
            candidate = (*known, item)
            if candidate in self.values:
                known = candidate
                best = self.values[candidate]
        if key and known in self.keys and known == tuple(path)[: len(known)] and known:
            return self.keys[known]
        return best


def load(text: str, filename: str) -> tuple[Located | None, list[RuleProblem]]:
    """Parse `text`; on a syntax error or duplicate keys return the problems instead."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [RuleProblem(filename, line, column, f"invalid YAML: {exc.problem}")]
    finally:
        loader.dispose()
    located = Located(None)
    problems: list[RuleProblem] = []
    if node is None:
        return Located(None), []
    try:
        located.data = _build(node, (), located, problems, filename, yaml.SafeLoader(""))
    except _TooLarge:
        return None, [RuleProblem(filename, 1, 1, f"more than {MAX_NODES} values (aliases?)")]
    return located, problems


class _TooLarge(Exception):
    pass


def _build(
    node: yaml.Node,
    path: Path,
    located: Located,
    problems: list[RuleProblem],
    filename: str,
    constructor: yaml.SafeLoader,
) -> Any:
    located.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if len(located.values) > MAX_NODES:
        raise _TooLarge
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, constructor)
            mark = key_node.start_mark
            if not isinstance(key, (str, int, float, bool)) or key is None:
                problems.append(
                    RuleProblem(filename, mark.line + 1, mark.column + 1, "keys must be plain text")
                )
                continue
            if key in result:
                first = located.keys.get((*path, key), (0, 0))
                problems.append(
                    RuleProblem(
                        filename,
                        mark.line + 1,
                        mark.column + 1,
                        f"duplicate key '{key}' (first at line {first[0]})",
                    )
                )
                continue
            located.keys[(*path, key)] = (mark.line + 1, mark.column + 1)
            result[key] = _build(value_node, (*path, key), located, problems, filename, constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, index), located, problems, filename, constructor)
            for index, item in enumerate(node.value)
        ]
    return _scalar(node, constructor)


def _scalar(node: yaml.Node, constructor: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return constructor.construct_object(node, deep=True)
    return None
