"""The compiled rule book: events in, matching rules out, in order, honouring `continue`.

A `RuleBook` is one version of the rules on its own durable_rules `Host`. Rulesets are
compiled lazily per partition of the rules: the rules that can hear an event's source and
source type, further cut by the field most rules test for equality (often
`labels.service`), so an event is posted only to the few small rulesets that can match it.

Reloads must not leak, and durable_rules cannot truly unload a ruleset: measured here,
`delete_ruleset` frees the ruleset but not the working memory of the state it created on
the first post (~13 KB per rule), and `delete_state` crashes the process (free(): invalid
size). So rulesets that are posted to are content-addressed and shared by every book of the
process (`_Engine`): a ruleset is compiled once per distinct definition and reused by every
later version that contains the same conditions in the same order, so reloading unchanged
or partly changed rules compiles, and keeps, only what is new. The compile check of a new
version (`_Engine.check`) is never posted to, and is deleted at once. durable_rules' own `Host` also
starts two timer threads that re-arm forever; `_Host` starts none -- Beacon uses no durable
timers, its deadlines live in the store -- so idle CPU does not grow with rulesets.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import durable_rules_engine
import orjson
from durable.engine import Host, MessageNotHandledException

from engine.models import AlertEvent

from .compiler import Unit, as_text, compile_unit, event_value, first_match_order
from .errors import RulesError
from .validate import LocatedRule, RuleBookSpec

# Below this many candidate rules one or two rulesets are already cheap; above it the rules
# are bucketed by their most common equality field.
BUCKET_THRESHOLD = 40
_NO_VALUE = "\0none"


class RuleCompileError(RulesError):
    """durable_rules refused a compiled ruleset (a bug in the compiler, never user input)."""


class _Host(Host):
    def __init__(self) -> None:
        self.hits: list[int] = []
        super().__init__()

    def _run(self) -> None:
        """No pulse threads: see the module docstring."""

    def get_action(self, action_name: str) -> Any:
        position = int(action_name)
        hits = self.hits

        def record(_closure: Any) -> None:
            # Actions only record: an exception here would be swallowed with the event.
            hits.append(position)

        return record


@dataclass
class _Partition:
    rules: list[LocatedRule]
    bucket_field: str | None = None
    buckets: dict[str, list[LocatedRule]] = field(default_factory=dict)
    wildcard: list[LocatedRule] = field(default_factory=list)
    units: dict[str, list[Unit]] = field(default_factory=dict)


def _equals(located: LocatedRule, path: str) -> set[str] | None:
    condition = located.rule.match.get(path)
    if condition is None:
        return None
    values: set[str] | None = None
    for op, arg in condition.operators():
        if op == "eq":
            values = {as_text(arg)}
        elif op == "in":
            values = {as_text(v) for v in arg}
    return values


class _Engine:
    """The process's one durable_rules host: rulesets by definition, shared by all books."""

    def __init__(self) -> None:
        self.host = _Host()
        self.lock = threading.RLock()
        self.names: dict[str, str] = {}
        self._counter = itertools.count()

    def ensure(self, unit: Unit) -> str:
        """The name of a ruleset with `unit`'s definition, compiling it if it is new."""
        key = orjson.dumps(unit.definition, option=orjson.OPT_SORT_KEYS).decode()
        with self.lock:
            name = self.names.get(key)
            if name is None:
                name = f"rs{next(self._counter)}"
                try:
                    self.host.register_rulesets({name: _copy(unit.definition)})
                except Exception as exc:  # durable_rules raises bare numbered errors
                    ids = ", ".join(r.rule.id for r in unit.rules)
                    raise RuleCompileError(f"durable_rules refused rules {ids}: {exc}") from exc
                self.names[key] = name
            return name

    def check(self, unit: Unit) -> None:
        """Compile `unit` once to see that the engine takes it, then delete it again: a
        ruleset never posted to has no working memory, so deleting it frees it (a 150-rule
        ruleset holds ~1.6 MB). Definitions already in use are known to compile."""
        key = orjson.dumps(unit.definition, option=orjson.OPT_SORT_KEYS).decode()
        with self.lock:
            if key in self.names:
                return
            name = f"check{next(self._counter)}"
            try:
                self.host.register_rulesets({name: _copy(unit.definition)})
            except Exception as exc:  # durable_rules raises bare numbered errors
                ids = ", ".join(r.rule.id for r in unit.rules)
                raise RuleCompileError(f"durable_rules refused rules {ids}: {exc}") from exc
            ruleset = self.host._ruleset_directory.pop(name)
            self.host._ruleset_list.remove(ruleset)
            durable_rules_engine.delete_ruleset(ruleset._handle)

    @property
    def ruleset_count(self) -> int:
        return len(self.host._ruleset_list)


ENGINE = _Engine()


class RuleBook:
    """One compiled version of the rules. `match` is thread-safe."""

    def __init__(self, spec: RuleBookSpec, version: int = 0) -> None:
        self.spec = spec
        self.version = version
        self.rules: dict[str, LocatedRule] = {r.rule.id: r for r in spec.rules}
        self._engine = ENGINE
        self._partitions: dict[tuple[str | None, str, str], _Partition] = {}
        # Rules owned by teams (`LocatedRule.teams`) hear only their teams' sources.
        self._scoped = any(r.teams is not None for r in spec.rules)
        self._closed = False
        self._verify()

    def _verify(self) -> None:
        """Compile every rule once, so a reload fails before it swaps, not at first use."""
        for chunk in first_match_order(self.spec.rules):
            self._engine.check(compile_unit("", chunk))

    def _compile(self, rules: list[LocatedRule]) -> Unit:
        unit = compile_unit("", rules)
        unit.name = self._engine.ensure(unit)
        return unit

    def match(self, event: AlertEvent, team: str | None = None) -> list[LocatedRule]:
        """The rules that act on firing `event` from a source of `team`, in order: the first
        match, then further matches while the previous one says `continue`. Rules owned by
        other teams never hear it; `team` None (not known) lets every rule hear it.

        The candidate rules may sit in several rulesets (a bucket's and the partition's
        wildcard rules, or chunks of a large partition), each holding its rules in global
        order: each step posts to every ruleset that could still hold an earlier match,
        gated at the position of the last match, and takes the earliest hit."""
        with self._engine.lock:
            if self._closed:
                raise RulesError(f"rule book version {self.version} is closed")
            units = self._units(event, team)
            facts: list[dict[str, Any] | None] = [None] * len(units)
            result: list[LocatedRule] = []
            after = -1  # the global index of the last rule that matched
            while True:
                best: LocatedRule | None = None
                for i, unit in enumerate(units):
                    local = bisect.bisect_right(unit.indices, after) - 1
                    if local + 1 >= len(unit.indices):
                        continue
                    if best is not None and unit.indices[local + 1] > best.index:
                        continue  # nothing in this ruleset can come before the hit we have
                    fact = facts[i]
                    if fact is None:
                        fact = facts[i] = unit.fact(event)
                    fact["_after"] = local
                    position = self._post(unit, fact)
                    if position is not None and (
                        best is None or unit.rules[position].index < best.index
                    ):
                        best = unit.rules[position]
                if best is None:
                    return result
                result.append(best)
                if not best.rule.continue_:
                    return result
                after = best.index

    def _post(self, unit: Unit, fact: dict[str, Any]) -> int | None:
        host = self._engine.host
        hits = host.hits
        hits.clear()
        try:
            host.post(unit.name, fact)
        except MessageNotHandledException:
            return None
        return hits[0] if hits else None

    def _units(self, event: AlertEvent, team: str | None) -> list[Unit]:
        key = (team if self._scoped else None, event.source, event.source_type)
        partition = self._partitions.get(key)
        if partition is None:
            partition = self._partitions[key] = self._partition(*key)
        if partition.bucket_field is None:
            return self._units_of(partition, _NO_VALUE, partition.rules)
        # A bucket's rules and the wildcard rules are separate rulesets, so the wildcard
        # rules are compiled once per partition, not once per bucket.
        units = self._units_of(partition, _NO_VALUE, partition.wildcard)
        found = event_value(event, partition.bucket_field)
        if found is not None and found in partition.buckets:
            units = [*self._units_of(partition, found, partition.buckets[found]), *units]
        return units

    def _units_of(self, partition: _Partition, key: str, rules: list[LocatedRule]) -> list[Unit]:
        units = partition.units.get(key)
        if units is None:
            units = partition.units[key] = [self._compile(c) for c in first_match_order(rules)]
        return units

    def _partition(self, team: str | None, source: str, source_type: str) -> _Partition:
        rules = [
            r
            for r in self.spec.rules
            if r.hears(team)
            and _allows(r, "source", source)
            and _allows(r, "source_type", source_type)
        ]
        partition = _Partition(rules)
        if len(rules) < BUCKET_THRESHOLD:
            return partition
        counts: dict[str, int] = {}
        for located in rules:
            for path in located.rule.match:
                if path not in ("source", "source_type") and _equals(located, path):
                    counts[path] = counts.get(path, 0) + 1
        if not counts:
            return partition
        best = max(sorted(counts), key=lambda p: counts[p])
        partition.bucket_field = best
        for located in rules:
            values = _equals(located, best)
            if values is None:
                partition.wildcard.append(located)
            else:
                for value in values:
                    partition.buckets.setdefault(value, []).append(located)
        return partition

    def close(self) -> None:
        """Forget this version's partitions; `match` then refuses. Its rulesets stay in the
        shared engine for later versions (see the module docstring)."""
        with self._engine.lock:
            self._closed = True
            self._partitions.clear()


def _allows(located: LocatedRule, path: str, value: str) -> bool:
    """Whether the rule can hear an event with `path` = `value`: only equality (`eq`, `in`)
    rules out a partition here; other operators are left to the engine."""
    values = _equals(located, path)
    return values is None or value in values


def _copy(value: Any) -> Any:
    # durable_rules' Ruleset deletes each rule's `run` key from the dict it is given.
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class RuleRuntime:
    """The rule book in force, swapped atomically by `swap`: a batch evaluates with the
    book it took (`using`), and an old book is closed once its last user is done."""

    def __init__(self, book: RuleBook | None = None) -> None:
        self._book = book
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}
        self._retired: dict[int, RuleBook] = {}

    @property
    def book(self) -> RuleBook | None:
        return self._book

    def swap(self, spec: RuleBookSpec, version: int) -> RuleBook:
        """Compile `spec` as `version` (raising before anything changes if it fails), then
        put it in force and retire the previous book."""
        new = RuleBook(spec, version)
        with self._lock:
            old, self._book = self._book, new
            if old is not None:
                self._retire(old)
        return new

    def _retire(self, book: RuleBook) -> None:
        if self._users.get(id(book), 0) == 0:
            book.close()
        else:
            self._retired[id(book)] = book

    @contextlib.contextmanager
    def using(self) -> Iterator[RuleBook]:
        """The current book, kept open until the block ends."""
        with self._lock:
            book = self._book
            if book is None:
                raise RulesError("no rules are loaded")
            self._users[id(book)] = self._users.get(id(book), 0) + 1
        try:
            yield book
        finally:
            with self._lock:
                self._users[id(book)] -= 1
                if self._users[id(book)] == 0:
                    del self._users[id(book)]
                    retired = self._retired.pop(id(book), None)
                    if retired is not None:
                        retired.close()

    def close(self) -> None:
        with self._lock:
            if self._book is not None:
                self._retire(self._book)
                self._book = None
