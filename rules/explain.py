""" "Why did no rule match my alert?": each rule's first condition that does not hold.

The rules engine (durable_rules, through `rules.compiler`) decides what matches; this module
only explains, in words, after the fact. It tests one condition at a time with the
semantics docs/rules.md gives for each operator, and tests/rules/test_explain.py holds it to
the engine: a rule has no miss here exactly when the engine matches it.

Nothing here runs on the intake's or the evaluator's path: the events API and `beacon events
tail` explain an unmatched event when someone asks.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.models import AlertEvent

from . import regex
from .compiler import as_text, event_value, number_of
from .validate import LocatedRule

#: Rules explained for one event, at most: the rest are counted.
MAX_EXPLAINED = 5

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def holds(value: str | None, op: str, arg: Any) -> bool:
    """Whether one operator of a condition holds on a field's `value` (None: absent)."""
    if op == "exists":
        return (value is not None) == bool(arg)
    if op == "ne":
        return value is None or value != as_text(arg)
    if op == "not_in":
        return value is None or value not in {as_text(v) for v in arg}
    if value is None:
        return False
    if op == "eq":
        return value == as_text(arg)
    if op == "in":
        return value in {as_text(v) for v in arg}
    if op in _COMPARE:
        number = number_of(value)
        return number is not None and _COMPARE[op](number, float(arg))
    if op == "startswith":
        return value.startswith(arg)
    if op == "endswith":
        return value.endswith(arg)
    if op == "contains":
        return arg in value
    if op == "matches":
        return regex.search(arg, value)
    raise ValueError(f"unknown operator {op!r}")


def _wanted(op: str, arg: Any) -> str:
    if op == "eq":
        return f'"{as_text(arg)}"'
    if op == "exists":
        return "it present" if arg else "it absent"
    if op in ("in", "not_in"):
        values = ", ".join(f'"{as_text(v)}"' for v in arg)
        return f"{op.replace('_', ' ')} [{values}]"
    if op in _COMPARE or op == "ne":
        return f"{op} {as_text(arg)}"
    return f'{op} "{arg}"'


def first_miss(rule: LocatedRule, event: AlertEvent) -> str | None:
    """The first condition of `rule` (in the order it was written) that does not hold on
    `event`, in words; None when every condition holds."""
    for path, condition in rule.rule.match.items():
        value = event_value(event, path)
        for op, arg in condition.operators():
            if not holds(value, op, arg):
                shown = "absent" if value is None else f'"{value}"'
                return f"{path} is {shown}, the rule wants {_wanted(op, arg)}"
    return None


@dataclass(frozen=True)
class Explanation:
    """Why no rule matched an event, as far as the rules in force now say."""

    #: (rule id, where it is written, its first miss or None if it matches now), in order.
    rules: list[tuple[str, str, str | None]]
    #: Rules for the event's source beyond those explained.
    more: int
    #: Rules that name another source (not explained: they could never match this one).
    other_sources: int
    #: The version of the rules explained with (the event may have met an older one).
    rules_version: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rules_version": self.rules_version,
            "rules": [
                {"rule": rule, "at": where, "missed": missed} for rule, where, missed in self.rules
            ],
            "more": self.more,
            "other_sources": self.other_sources,
        }

    def lines(self) -> list[str]:
        """The explanation as text lines (`beacon events tail`)."""
        if not self.rules and not self.other_sources:
            return [f"no rules are in force (rules version {self.rules_version})"]
        if not self.rules:
            return [f"no rule is for this source: the {self.other_sources} in force name others"]
        out = [
            f"{rule} ({where}): {missed}" if missed else f"{rule} ({where}): matches now"
            for rule, where, missed in self.rules
        ]
        if self.more:
            out.append(f"... and {self.more} more rules for this source")
        return out


def explain(rules: Sequence[LocatedRule], event: AlertEvent, rules_version: int = 0) -> Explanation:
    """For each rule that could apply to `event`'s source (in evaluation order, up to
    `MAX_EXPLAINED`), the first condition that does not hold."""
    explained: list[tuple[str, str, str | None]] = []
    more = other = 0
    for located in rules:
        source = located.rule.match.get("source")
        if source is not None and not all(
            holds(event.source, op, arg) for op, arg in source.operators()
        ):
            other += 1
            continue
        if len(explained) >= MAX_EXPLAINED:
            more += 1
            continue
        where = f"{located.file}:{located.line}"
        explained.append((located.rule.id, where, first_miss(located, event)))
    return Explanation(explained, more, other, rules_version)
