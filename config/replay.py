"""Replaying events through the rules on a virtual clock, without side effects.

`beacon rules test` is built on this. A *scenario* (YAML) lists events -- normalised events,
or a tool's raw payload that the alert source's adapter parses -- each received `at` an
offset (`90s`) or an ISO time, optionally the world they run in (the config file's
services, sources, templates, channels and maintenance windows), how long to let the clock
run after the last event (`until`), and optionally the intents expected:

    world: {services: [{key: api}], alert_sources: [{key: kuma, type: uptime-kuma}]}
    events:
      - {at: 0s, source: kuma, event: {status: firing, dedup_key: m1}}
      - {at: 5m, source: kuma, payload: fixtures/up.json}
    until: 10m
    expect:
      - {intent: claim, service: api, status: major_outage}

The replay runs the same `engine.activations.Machine` as Beacon, on `MemoryState`; an
expected intent matches an actual one when every key it gives is equal, and the lists must
have the same length. Parsing raw payloads is injected (`PayloadParser`), since rules do not
import the adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from engine.activations import Intent, Machine, MemoryState
from engine.models import AlertEvent, EventStatus
from rules.errors import RulesError
from rules.explain import Explanation, explain
from rules.runtime import RuleBook
from rules.schema import parse_duration
from rules.yamlpos import load

from .world import ConfigWorld, world_from_config

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
#: How long after its last event a bare payload file's replay may run the clock on.
SETTLE_LIMIT = timedelta(days=1)

#: (source type, body, headers, received_at, adapter settings) -> events
PayloadParser = Callable[
    [str, bytes, Mapping[str, str], datetime, Mapping[str, Any]], list[AlertEvent]
]


class ScenarioError(RulesError):
    """A scenario file is malformed; the message names the file and the event."""


@dataclass
class _Item:
    path: Path
    index: int
    raw: Any
    start: datetime
    #: A bare payload file: received when the tool says it happened (its own time), so the
    #: virtual clock starts there rather than at `DEFAULT_START`.
    at_tool_time: bool = False


@dataclass
class Scenario:
    """A parsed scenario: its event entries, the world and the expectations."""

    items: list[_Item]
    world: ConfigWorld | None
    until: datetime | None
    expect: list[dict[str, Any]] | None
    name: str = ""
    #: A bare payload file: no `until` to give, so the clock runs on while anything is due.
    settle: bool = False


@dataclass
class ReplayResult:
    intents: list[Intent]
    lines: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    #: Firing events no rule matched, with why not (as `beacon events tail` explains them).
    unmatched: list[tuple[AlertEvent, Explanation]] = field(default_factory=list)
    #: How many events were replayed (test deliveries are not events).
    events: int = 0


def read_scenario(path: Path, *, source: str | None = None) -> Scenario:
    """Read a scenario file (`.yaml`/`.yml`) or a bare payload file (anything else, parsed
    as one delivery from `source`, received at the start)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.suffix not in (".yaml", ".yml"):
        if source is None:
            raise ScenarioError(f"{path}: a raw payload needs --source KEY")
        item = _Item(
            path,
            0,
            {"at": "0s", "source": source, "payload": path.name},
            DEFAULT_START,
            at_tool_time=True,
        )
        return Scenario([item], None, None, None, str(path), settle=True)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: a scenario file is UTF-8 text") from None
    located, problems = load(text, str(path))
    if problems or located is None:
        raise ScenarioError("\n".join(str(p) for p in problems))
    data = located.data or {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping with `events`")
    unknown = set(data) - {"description", "start", "world", "events", "until", "expect"}
    if unknown:
        raise ScenarioError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    world = world_from_config(data["world"], str(path)) if "world" in data else None
    start = _time(data.get("start"), DEFAULT_START, str(path), "start")
    items = data.get("events") or []
    if not isinstance(items, list):
        raise ScenarioError(f"{path}: `events` must be a list")
    pending = [_Item(path, i, item, start) for i, item in enumerate(items)]
    until = _time(data.get("until"), None, str(path), "until", start) if "until" in data else None
    expect = data.get("expect")
    if expect is not None and not (
        isinstance(expect, list) and all(isinstance(e, dict) for e in expect)
    ):
        raise ScenarioError(f"{path}: `expect` must be a list of mappings")
    return Scenario(pending, world, until, expect, str(path))


def _time(
    value: Any,
    default: datetime | None,
    where: str,
    what: str,
    start: datetime = DEFAULT_START,
) -> Any:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    negative = text.startswith("-")
    try:
        offset = parse_duration(text.lstrip("-+"))
        return start - offset if negative else start + offset
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(
            f"{where}: {what} {value!r} is neither a duration like 90s nor an ISO time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_events(
    items: Sequence[_Item], world: ConfigWorld, parse_payload: PayloadParser | None
) -> list[AlertEvent]:
    """The events of `items`, stamped with ids `e1, e2, ...` in receive order."""
    events: list[tuple[datetime, int, AlertEvent]] = []
    for item in items:
        where = f"{item.path}: event {item.index + 1}"
        raw = item.raw
        if not isinstance(raw, dict):
            raise ScenarioError(f"{where}: must be a mapping")
        unknown = set(raw) - {"at", "source", "event", "payload", "headers"}
        if unknown:
            raise ScenarioError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        at = _time(raw.get("at", "0s"), None, where, "at", item.start)
        source = raw.get("source")
        if not isinstance(source, str):
            raise ScenarioError(f"{where}: `source` (an alert source key) is required")
        source_type = world.source_type(source)
        if source_type is None:
            raise ScenarioError(f"{where}: unknown alert source {source!r}")
        if ("event" in raw) == ("payload" in raw):
            raise ScenarioError(f"{where}: give exactly one of `event` or `payload`")
        if "event" in raw:
            parsed = [_normalised(raw["event"], source, source_type, at, item.start, where)]
        else:
            if parse_payload is None:
                raise ScenarioError(f"{where}: raw payloads need the adapters (beacon rules test)")
            file = item.path.parent / str(raw["payload"])
            if not file.is_file():
                raise ScenarioError(f"{where}: payload file {file} not found")
            headers = {str(k).lower(): str(v) for k, v in dict(raw.get("headers") or {}).items()}
            body = file.read_bytes()
            settings = world.source_settings.get(source, {})
            try:
                parsed = parse_payload(source_type, body, headers, at, settings)
                if item.at_tool_time and parsed:
                    # Adapters are pure: parsed again, received at the tool's own time.
                    at = min(e.occurred_at for e in parsed)
                    parsed = parse_payload(source_type, body, headers, at, settings)
            except Exception as exc:  # an adapter's error names what was wrong with the body
                raise ScenarioError(f"{where}: {file.name}: {exc}") from None
            parsed = [e.with_ids(id="", source=source) for e in parsed if not e.test]
        for event in parsed:
            events.append((at, len(events), event))
    events.sort(key=lambda t: (t[0], t[1]))
    return [e.with_ids(id=f"e{i + 1}", source=e.source) for i, (_, _, e) in enumerate(events)]


def _normalised(
    raw: Any, source: str, source_type: str, at: datetime, start: datetime, where: str
) -> AlertEvent:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: `event` must be a mapping")
    fields = dict(raw)
    occurred = _time(fields.pop("occurred_at", None), at, where, "occurred_at", start)
    fields.setdefault("dedup_key", "alert")
    try:
        return AlertEvent(
            source=source,
            source_type=source_type,
            received_at=at,
            occurred_at=occurred,
            **fields,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ScenarioError(f"{where}: {problems}") from None


def replay(
    book: RuleBook,
    world: ConfigWorld,
    events: Sequence[AlertEvent],
    until: datetime | None = None,
    *,
    settle: bool = False,
) -> list[Intent]:
    """Every intent the events produce, on a virtual clock, with maintenance windows of
    `world` starting and ending on time; the clock stops at the last event, or runs on to
    `until`, or with `settle` while anything is due (up to `SETTLE_LIMIT`)."""
    state = MemoryState()
    policies = {rule_id: located.rule for rule_id, located in book.rules.items()}
    machine = Machine(state, world, policies)
    ended: set[str] = set()
    intents: list[Intent] = []

    def matches(event: AlertEvent) -> list[Any]:
        if event.status != EventStatus.FIRING:
            return []
        return [located.rule for located in book.match(event)]

    def advance(to: datetime) -> None:
        for window in sorted(world.windows, key=lambda w: w.end):
            if window.key not in ended and window.end <= to:
                ended.add(window.key)
                intents.extend(machine.on_time(window.end))
                intents.extend(
                    machine.end_maintenance(window.key, window.on_end, window.end, matches)
                )
        intents.extend(machine.on_time(to))

    for event in events:
        advance(event.received_at)
        found, _outcome = machine.on_event(event, matches(event))
        intents.extend(found)
    if until is not None:
        advance(until)
    elif settle and events:
        # The clock runs on while anything is due (a `for`, `resolve.after`, a window's
        # end), as it would in Beacon with no further event, for a bounded time.
        limit = events[-1].received_at + SETTLE_LIMIT
        while True:
            moments = [w.end for w in world.windows if w.key not in ended]
            due = state.next_due()
            if due is not None:
                moments.append(due)
            moment = min(moments, default=None)
            if moment is None or moment > limit:
                break
            advance(moment)
    return intents


def compare(
    expected: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Differences between expected intents (partial mappings) and actual JSON lines."""
    problems = []
    for index in range(max(len(expected), len(actual))):
        want = expected[index] if index < len(expected) else None
        got = actual[index] if index < len(actual) else None
        if want is None:
            problems.append(f"intent {index + 1}: unexpected {got}")
        elif got is None:
            problems.append(f"intent {index + 1}: expected {dict(want)}, got nothing")
        else:
            wrong = {k: v for k, v in want.items() if got.get(k) != _plain(v)}
            if wrong:
                detail = ", ".join(
                    f"{k}: expected {v!r}, got {got.get(k)!r}" for k, v in wrong.items()
                )
                problems.append(f"intent {index + 1} ({got.get('intent')}): {detail}")
    return problems


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def unmatched(book: RuleBook, events: Sequence[AlertEvent]) -> list[tuple[AlertEvent, Explanation]]:
    """The firing events no rule matches, each with each rule's first miss."""
    rules = list(book.rules.values())
    return [
        (event, explain(rules, event))
        for event in events
        if event.status == EventStatus.FIRING and not book.match(event)
    ]


def run(
    book: RuleBook,
    scenario_paths: Sequence[Path],
    *,
    world: ConfigWorld | None,
    parse_payload: PayloadParser | None,
    source: str | None = None,
) -> list[tuple[str, ReplayResult, bool]]:
    """Replay each scenario; returns (name, result, has expectations) per scenario."""
    results = []
    for path in scenario_paths:
        scenario = read_scenario(path, source=source)
        scenario_world = scenario.world or world
        if scenario_world is None:
            raise ScenarioError(f"{path}: no world: give --config FILE or a `world:` section")
        events = build_events(scenario.items, scenario_world, parse_payload)
        intents = replay(book, scenario_world, events, scenario.until, settle=scenario.settle)
        # Through JSON and back: the lines compare exactly as they print.
        lines = [orjson.loads(orjson.dumps(i.to_json())) for i in intents]
        result = ReplayResult(intents, lines, unmatched=unmatched(book, events), events=len(events))
        if scenario.expect is not None:
            result.mismatches = compare(scenario.expect, lines)
        results.append((scenario.name, result, scenario.expect is not None))
    return results


__all__ = ["ReplayResult", "Scenario", "ScenarioError", "compare", "replay", "run"]
