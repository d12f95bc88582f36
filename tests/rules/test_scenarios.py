"""Rule scenarios, each run once on every state the activation machine has.

A scenario is a directory of `tests/rules/scenarios/` holding `rules.yaml` and one or more
scenario files in the `beacon rules test` format (events received at offsets, `until`,
`expect`), run in `scenarios/world.yaml` unless it gives its own `world:`. Each scenario
runs

- through the in-memory replay, as `beacon rules test RULES --config WORLD --events FILE`
  runs it (the command itself, its JSON lines and exit code), and
- through the store evaluator on SQLite and on PostgreSQL: the world and rules applied by
  `beacon apply`, each event stored as the intake stores it and evaluated by
  `workers.evaluate` when it is received, maintenance windows ended and the clock run by
  the evaluator's own jobs (`end_maintenance`, `tick`), the intents it applies recorded.

Both must meet the scenario's `expect`, and give the same lines: the store's window ids
and event ids are written as the replay names them (the window's key, `e1, e2, ...`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import yaml

import workers.evaluate as evaluate_module
from cli.main import main
from cli.rules_commands import read_config_world
from config.apply import apply_file
from config.replay import build_events, compare, read_scenario
from engine.activations import Intent
from engine.db import Store
from engine.tables import alert_sources, maintenance_windows
from tests.rules.store_helpers import ingest
from workers.evaluate import end_maintenance, evaluate_partition, rules_runtime, tick

HERE = Path(__file__).parent / "scenarios"
WORLD = HERE / "world.yaml"
SCENARIOS = sorted(p for p in HERE.glob("*/*.yaml") if p.name != "rules.yaml")


def scenario_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 20


# --- in memory: `beacon rules test` ----------------------------------------------------------


def rules_test(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    """`beacon rules test` on the scenario: its exit code and JSON lines."""
    args = ["rules", "test", str(path.parent / "rules.yaml"), "--events", str(path)]
    if "world" not in _data(path):
        args += ["--config", str(WORLD)]
    code = main(args)
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def _data(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# --- on the store: the evaluator's jobs ----------------------------------------------------


def store_run(store: Store, path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The scenario through the store evaluator: the intents it applied, as JSON lines."""
    data = _data(path)
    world_data = data.get("world") or yaml.safe_load(WORLD.read_text())
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "beacon.yaml"
    (tmp_path / "rules.yaml").write_text((path.parent / "rules.yaml").read_text())
    config.write_text(yaml.safe_dump({**world_data, "rules": ["rules.yaml"]}))
    apply_file(store, config)
    runtime = rules_runtime(store)

    world = read_config_world(str(WORLD))[0] if "world" not in data else None
    scenario = read_scenario(path)
    events = build_events(scenario.items, scenario.world or world, None)

    applied: list[Intent] = []
    real = evaluate_module.apply_intents

    def recording(conn: Any, ids: Any, intents: Any) -> None:
        intents = list(intents)
        real(conn, ids, intents)
        applied.extend(intents)

    monkeypatch.setattr(evaluate_module, "apply_intents", recording)

    with store.read() as conn:
        sources = dict(conn.execute(sa.select(alert_sources.c.key, alert_sources.c.id)).all())
        windows = conn.execute(
            sa.select(
                maintenance_windows.c.id, maintenance_windows.c.key, maintenance_windows.c.ends_at
            )
        ).all()
    pending = sorted(windows, key=lambda w: (w.ends_at, w.id))
    event_names: dict[str, str] = {}

    def advance(to: datetime) -> None:
        # As the replay does: windows that ended by `to` end first, each on its own time.
        while pending and pending[0].ends_at <= to:
            window = pending.pop(0)
            tick(store, runtime, window.ends_at)
            end_maintenance(store, runtime, window.id)
        tick(store, runtime, to)

    for event in events:
        advance(event.received_at)
        (stored,) = ingest(store, sources[event.source], event, partition=event.source)
        event_names[str(stored)] = event.id
        evaluate_partition(store, runtime, event.source)
    if scenario.until is not None:
        advance(scenario.until)

    window_keys = {str(w.id): w.key for w in windows}
    lines = []
    for intent in applied:
        line = orjson.loads(orjson.dumps(intent.to_json()))
        if "event_id" in line:
            line["event_id"] = event_names.get(line["event_id"], line["event_id"])
        if line["intent"] == "hold":
            line["window"] = window_keys.get(line["window"], line["window"])
        lines.append(line)
    return scenario.expect, lines


@pytest.mark.parametrize("path", SCENARIOS, ids=scenario_id)
def test_scenario_on_the_replay_and_on_the_store(
    path: Path,
    store: Store,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, replayed = rules_test(path, capsys)
    expect = _data(path).get("expect")
    assert expect is not None, "a scenario here says what it expects"
    assert compare(expect, replayed) == [] and code == 0, replayed
    expected, stored = store_run(store, path, tmp_path, monkeypatch)
    assert compare(expected or [], stored) == [], stored
    assert stored == replayed


def _flipped(path: Path, tmp_path: Path) -> Path:
    """A copy of scenario `path` whose expectation says the opposite: the first expected
    intent another kind, or one intent where none is expected."""
    data = _data(path)
    expect = data["expect"]
    if expect:
        first = dict(expect[0])
        first["intent"] = "release" if first["intent"] != "release" else "claim"
        data["expect"] = [first, *expect[1:]]
    else:
        data["expect"] = [{"intent": "claim"}]
    flipped = tmp_path / "flipped" / path.parent.name / path.name
    flipped.parent.mkdir(parents=True)
    (flipped.parent / "rules.yaml").write_text((path.parent / "rules.yaml").read_text())
    flipped.write_text(yaml.safe_dump(data))
    return flipped


@pytest.mark.parametrize(
    "name",
    [
        "api/two-alerts-one-resolves-the-other-claim-stays",
        "api/a-firing-older-than-a-resolve-that-came-first-starts-nothing",
        "db-maintenance/maintenance-holds-firing-processes-resolves-and-replays-at-the-end",
    ],
)
def test_a_scenario_whose_expectation_is_flipped_fails_on_every_state(
    name: str,
    store: Store,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flipped = _flipped(HERE / f"{name}.yaml", tmp_path)
    code, replayed = rules_test(flipped, capsys)
    expect = _data(flipped)["expect"]
    assert code == 1 and compare(expect, replayed) != []
    expected, stored = store_run(store, flipped, tmp_path / "store", monkeypatch)
    assert compare(expected or [], stored) != []
