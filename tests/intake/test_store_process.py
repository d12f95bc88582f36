"""Embedded mode's store process (`engine.store_process`): a real `beacon serve` commits
the intake's batches and evaluates them in a process of its own, answers 202 only after the
commit and a retry with the event it stored; the store process starts and stops with
`beacon serve`, and a store process that dies takes its web process with it."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.intake.test_e2e import FIXTURES, prepared
from tests.support import Served, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, p in parents.items() if p == parent]
        found += children
        todo += children
    return found


def _store_process(served: Served) -> int | None:
    assert served.proc is not None
    for pid in _descendants(served.proc.pid):
        try:
            if b"cli.store_process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_the_store_process_commits_and_evaluates_and_a_retry_has_no_second_effect(
    tmp_path: Path,
) -> None:
    data_dir, key = prepared(tmp_path)
    served = Served(data_dir)
    served.start()
    try:
        child = _store_process(served)
        assert child is not None, "beacon serve started no store process"
        body = (FIXTURES / "alert_sources/alertmanager/firing_single.json").read_bytes()
        first = httpx.post(f"{served.url}/api/v1/events/{key}", content=body)
        again = httpx.post(f"{served.url}/api/v1/events/{key}", content=body)
        assert first.status_code == again.status_code == 202, first.text
        assert first.json()["events"] == again.json()["events"]
        assert again.json()["duplicates"] == 1
        db = sqlite3.connect(data_dir / "beacon.db")
        try:
            # Committed before the 202 (read at once), and evaluated by the store process.
            assert db.execute("SELECT count(*) FROM alert_events").fetchone() == (1,)

            def evaluated() -> bool:
                row = db.execute("SELECT evaluated_at FROM alert_events").fetchone()
                return row[0] is not None

            wait_for(evaluated, 30, "the event's evaluation")
            claimers = {
                r[0] for r in db.execute("SELECT claimed_by FROM outbox WHERE kind = 'evaluate'")
            }
            assert claimers and all(f"-{child}-" in c for c in claimers), claimers
        finally:
            db.close()
    finally:
        served.stop()
    assert served.proc is not None and served.proc.returncode == 0
    wait_for(lambda: not _alive(child), 10, "the store process to end with beacon serve")


def test_beacon_serve_ends_when_its_store_process_dies(tmp_path: Path) -> None:
    data_dir, _key = prepared(tmp_path)
    served = Served(data_dir)
    served.start()
    try:
        child = _store_process(served)
        assert child is not None
        os.kill(child, signal.SIGKILL)
        assert served.proc is not None
        # Nothing can be committed any more: the web process ends, and `beacon serve` with
        # it, rather than answering every delivery 503.
        assert served.proc.wait(30) != 0
    finally:
        served.stop()
