"""`beacon events send` and `beacon events tail`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from engine import events
from engine.db import create_store
from engine.migrate import upgrade
from engine.models import AlertEvent
from engine.settings import Settings
from engine.sources import find_by_key
from engine.tables import alert_events, alert_sources, outbox, utcnow
from tests.conftest import ROOT
from tests.intake.conftest import (  # fake_adapter: autouse, the fake tool's adapter
    add_source,
    add_team,
    events_in,
    fake_adapter,  # noqa: F401
    firing,
)
from tests.rules.store_helpers import load_rules
from tests.support import beacon_env


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("BEACON_DATA_DIR", str(path))
    for name in ("BEACON_DATABASE_URL", "BEACON_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(path)}))
    upgrade(store)
    team = add_team(store, "platform")
    add_source(store, team, "tool")
    store.dispose()
    return path


def test_send_stores_a_file_as_a_delivery_to_be_evaluated(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "down.json"
    body.write_text(json.dumps(firing("cli-1")))
    assert main(["events", "send", "tool", str(body)]) == 0
    out = capsys.readouterr().out
    assert "firing 'cli-1': stored as event" in out
    [row] = events_in(data_dir)
    assert row.dedup_key == "cli-1" and not row.test and row.evaluated_at is None
    assert json.loads(out.splitlines()[-1]) == {"accepted": 1, "events": [str(row.id)]}
    # Sent twice, it is a duplicate, as a retried delivery would be.
    assert main(["events", "send", "tool", str(body)]) == 0
    assert "duplicate of event" in capsys.readouterr().out


def test_send_with_test_stores_test_events(data_dir: Path, tmp_path: Path) -> None:
    body = tmp_path / "down.json"
    body.write_text(json.dumps(firing("cli-2")))
    assert main(["events", "send", "tool", str(body), "--test"]) == 0
    [row] = events_in(data_dir)
    assert row.test and row.outcome["result"] == "test"


def test_send_reads_query_strings_and_forms(data_dir: Path, tmp_path: Path) -> None:
    query = tmp_path / "q.txt"
    query.write_text("?id=q1&state=down\n")
    form = tmp_path / "f.txt"
    form.write_text("id=f1&state=up")
    assert main(["events", "send", "tool", str(query), "--query"]) == 0
    assert main(["events", "send", "tool", str(form), "--form"]) == 0
    assert [(r.dedup_key, r.status) for r in events_in(data_dir)] == [
        ("q1", "firing"),
        ("f1", "resolved"),
    ]


def test_send_says_what_is_wrong_with_the_file(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "bad.json"
    body.write_text("{}")
    assert main(["events", "send", "tool", str(body)]) == 1
    assert "bad.json: not a valid fake-tool delivery: alerts" in capsys.readouterr().err
    assert main(["events", "send", "nope", str(body)]) == 2
    assert "no alert source 'nope'" in capsys.readouterr().err
    # Once a traceback.
    assert main(["events", "send", "tool", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: cannot read: No such file or directory" in capsys.readouterr().err
    assert main(["events", "send", "tool", str(tmp_path)]) == 2
    assert f"{tmp_path}: cannot read: Is a directory" in capsys.readouterr().err


def test_send_refuses_a_disabled_source_unless_it_is_a_test(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    with store.begin() as conn:
        conn.execute(alert_sources.update().values(enabled=False))
    body = tmp_path / "down.json"
    body.write_text(json.dumps(firing("d1")))
    assert main(["events", "send", "tool", str(body)]) == 2
    assert "alert source 'tool' is disabled" in capsys.readouterr().err
    assert events_in(data_dir) == []
    assert main(["events", "send", "tool", str(body), "--test"]) == 0
    store.dispose()


def test_tail_shows_recent_events_with_their_outcome(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "down.json"
    for n in range(3):
        body.write_text(json.dumps(firing(f"t{n}")))
        main(["events", "send", "tool", str(body)])
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    with store.begin() as conn:
        conn.execute(
            alert_events.update()
            .where(alert_events.c.dedup_key == "t2")
            .values(
                evaluated_at=utcnow(),
                outcome={
                    "result": "matched",
                    "matched": ["db-down"],
                    "effects": ["claim db major_outage"],
                },
            )
        )
    store.dispose()
    capsys.readouterr()
    assert main(["events", "tail", "tool", "-n", "2", "--no-follow"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "t1" in lines[0] and lines[0].endswith("-> pending")
    assert "t2" in lines[1]
    assert lines[1].endswith("-> matched by db-down: claim db major_outage")


def test_tail_says_why_no_rule_matched_a_firing_event(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "down.json"
    body.write_text(json.dumps(firing("t1", summary="cpu high")))
    main(["events", "send", "tool", str(body)])
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    load_rules(
        store,
        """
  - id: tool-disk
    match: {source: tool, summary: {contains: disk}}
    services: [api]
    then: [{set_status: major_outage}]
""",
    )
    with store.begin() as conn:
        conn.execute(
            alert_events.update().values(
                evaluated_at=utcnow(),
                outcome={"result": "no_match", "matched": [], "effects": ["no rule matched"]},
            )
        )
    store.dispose()
    capsys.readouterr()
    assert main(["events", "tail", "tool", "--no-follow"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("-> no_match: no rule matched")
    assert lines[1:] == [
        '    tool-disk (rules.yaml:4): summary is "cpu high", the rule wants contains "disk"'
    ]


def test_tail_follows_new_events_and_their_outcomes(data_dir: Path) -> None:
    env = beacon_env(data_dir)
    with subprocess.Popen(
        [sys.executable, "-m", "cli", "events", "tail", "tool"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            _follow(proc, data_dir)
        finally:
            proc.terminate()
            proc.wait(10)


def _follow(proc: subprocess.Popen[str], data_dir: Path) -> None:
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    with store.read() as conn:
        [source] = find_by_key(conn, "tool", None)
    time.sleep(1.5)  # let tail start polling, so the event arrives while it follows
    now = utcnow()
    event = AlertEvent(
        source_type="fake-tool",
        dedup_key="live-1",
        status="firing",
        occurred_at=now,
        received_at=now,
    )
    [place] = events.store_one(store, events.Submission(source, [event], now))
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "live-1" in first and first.rstrip().endswith("-> pending")
    with store.begin() as conn:
        conn.execute(
            alert_events.update()
            .where(alert_events.c.id == place.id)
            .values(
                evaluated_at=utcnow(), outcome={"result": "no_match", "matched": [], "effects": []}
            )
        )
        conn.execute(outbox.delete())
    store.dispose()
    assert proc.stdout.readline().strip() == f"#{place.id} -> no_match"
