"""Rules to durable_rules rulesets.

An event is never posted with its own field names: every field a ruleset tests becomes a
flat property (`f0`, `f1`, ...), so label names with dots (`app.kubernetes.io/name`) work
and an event carries only the few properties its ruleset needs (durable_rules refuses more
than 255). Operators the engine lacks or gets wrong (`matches` -- its `$mt` is not a regular
expression --, `startswith`, `endswith`, `contains`) are computed in Python into 0/1
properties before the post, and numeric comparisons test a number parsed from the value;
durable_rules then decides, with every rule's full condition, which rule matches.

First match with `continue`: each rule also requires `_after < its position`, and has its
position as `pri` (lower runs first). A post with `_after = -1` fires the first matching rule
only (an event is consumed by one rule); if that rule says `continue`, the same fact is
posted again with `_after` set to its position, and so on.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.models import AlertEvent

from . import regex
from .schema import LABEL_PREFIX
from .validate import LocatedRule

# Measured: 512 rules testing one field hang durable_rules, and more than 256 rules with the
# same last condition fail; small rulesets also compile fast (~2 ms) and match fast.
MAX_RULES_PER_RULESET = 150
# Below durable_rules' 255 properties per event, with room for `_after`.
MAX_PROPERTIES = 200
PYTHON_OPERATORS = ("startswith", "endswith", "contains", "matches")
NUMERIC_OPERATORS = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


def event_value(event: AlertEvent, path: str) -> str | None:
    """The value of a rule field on `event` (`labels.<name>`: the label, dots included)."""
    if path.startswith(LABEL_PREFIX):
        return event.labels.get(path[len(LABEL_PREFIX) :])
    value = getattr(event, path)
    return None if value is None else str(value)


def as_text(value: Any) -> str:
    """A rule value as the string an event would carry (labels are strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def number_of(value: str | None) -> float | None:
    """A field's value read as a number for `gt`, `gte`, `lt` and `lte`; None when it is
    not one (NaN included). Infinities (Prometheus writes `+Inf`, as in a histogram's `le`
    label) become the largest finite numbers of their sign: they compare the same with any
    threshold a rule can write, and durable_rules cannot read an infinite fact (it refuses
    the whole event)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if math.isnan(number):
        return None
    if math.isinf(number):
        return math.copysign(sys.float_info.max, number)
    return number


@dataclass
class _Predicate:
    prop: str
    path: str
    test: Callable[[str], bool]


@dataclass
class Unit:
    """One compiled durable_rules ruleset: the rules it holds (in order) and how to turn an
    event into the fact it is posted as."""

    name: str
    rules: list[LocatedRule]
    definition: dict[str, Any]
    indices: list[int] = field(default_factory=list)  # the rules' global positions
    fields: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)
    predicates: list[_Predicate] = field(default_factory=list)

    def fact(self, event: AlertEvent) -> dict[str, Any]:
        """The flat fact for `event`: only the properties this ruleset tests."""
        fact: dict[str, Any] = {}
        for path, prop in self.fields.items():
            value = event_value(event, path)
            if value is not None:
                fact[prop] = value
        for path, prop in self.numbers.items():
            number = number_of(event_value(event, path))
            if number is not None:
                fact[prop] = number
        for predicate in self.predicates:
            value = event_value(event, predicate.path)
            fact[predicate.prop] = 1 if value is not None and predicate.test(value) else 0
        return fact


class _Builder:
    def __init__(self, name: str) -> None:
        self.unit = Unit(name, [], {})
        self._predicates: dict[tuple[str, str, str], str] = {}

    def prop(self, path: str) -> str:
        return self.unit.fields.setdefault(path, f"f{len(self.unit.fields)}")

    def number(self, path: str) -> str:
        return self.unit.numbers.setdefault(path, f"n{len(self.unit.numbers)}")

    def predicate(self, path: str, op: str, arg: str) -> str:
        key = (path, op, arg)
        if key not in self._predicates:
            prop = f"p{len(self._predicates)}"
            self._predicates[key] = prop
            self.unit.predicates.append(_Predicate(prop, path, _python_test(op, arg)))
        return self._predicates[key]

    def condition(self, path: str, op: str, arg: Any) -> dict[str, Any]:
        if op in PYTHON_OPERATORS:
            return {self.predicate(path, op, arg): 1}
        if op in NUMERIC_OPERATORS:
            return {NUMERIC_OPERATORS[op]: {self.number(path): arg}}
        prop = self.prop(path)
        if op == "eq":
            return {prop: as_text(arg)}
        if op == "in":
            return _any([{prop: as_text(v)} for v in arg])
        if op == "ne":
            # An absent label is "not equal" (DESIGN.md), which `$neq` alone would not hold.
            return _any([{"$nex": {prop: 1}}, {"$neq": {prop: as_text(arg)}}])
        if op == "not_in":
            return _any([{"$nex": {prop: 1}}, _all([{"$neq": {prop: as_text(v)}} for v in arg])])
        if op == "exists":
            return {"$ex" if arg else "$nex": {prop: 1}}
        raise ValueError(f"unknown operator {op!r}")  # the schema makes this unreachable


def _any(items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {"$or": items}


def _all(items: list[dict[str, Any]]) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {"$and": items}


def _python_test(op: str, arg: str) -> Callable[[str], bool]:
    if op == "matches":
        pattern = regex.compile_pattern(arg)
        return lambda value: pattern.search(value) is not None
    if op == "startswith":
        return lambda value: value.startswith(arg)
    if op == "endswith":
        return lambda value: value.endswith(arg)
    return lambda value: arg in value


def compile_unit(name: str, rules: Sequence[LocatedRule]) -> Unit:
    """A ruleset named `name` for `rules` (given in evaluation order, at most
    `MAX_RULES_PER_RULESET`); each rule's action name is its position in `rules`."""
    if len(rules) > MAX_RULES_PER_RULESET:
        raise ValueError(f"{len(rules)} rules in one ruleset; split them first")
    builder = _Builder(name)
    for position, located in enumerate(rules):
        conditions = [
            builder.condition(path, op, arg)
            for path, condition in located.rule.match.items()
            for op, arg in condition.operators()
        ]
        # Last, and different for every rule: see the module docstring on `continue`.
        conditions.append({"$lt": {"_after": position}})
        builder.unit.definition[f"r{position}"] = {
            "all": [{"m": _all(conditions)}],
            "pri": position,
            "run": str(position),
        }
    builder.unit.rules = list(rules)
    builder.unit.indices = [r.index for r in rules]
    return builder.unit


def _properties(located: LocatedRule) -> set[tuple[str, ...]]:
    """The fact properties a rule needs (see `_Builder`): one per field tested by the
    engine, one per field compared as a number, one per Python-evaluated condition."""
    found: set[tuple[str, ...]] = set()
    for path, condition in located.rule.match.items():
        for op, arg in condition.operators():
            if op in PYTHON_OPERATORS:
                found.add(("p", path, op, str(arg)))
            elif op in NUMERIC_OPERATORS:
                found.add(("n", path))
            else:
                found.add(("f", path))
    return found


def first_match_order(rules: Sequence[LocatedRule]) -> list[list[LocatedRule]]:
    """`rules` cut into consecutive chunks small enough for one ruleset each: at most
    `MAX_RULES_PER_RULESET` rules and `MAX_PROPERTIES` fact properties (durable_rules
    refuses events with more than 255)."""
    chunks: list[list[LocatedRule]] = []
    current: list[LocatedRule] = []
    properties: set[tuple[str, ...]] = set()
    for located in rules:
        needed = _properties(located)
        if current and (
            len(current) >= MAX_RULES_PER_RULESET or len(properties | needed) > MAX_PROPERTIES
        ):
            chunks.append(current)
            current, properties = [], set()
        current.append(located)
        properties |= needed
    if current:
        chunks.append(current)
    return chunks
