"""SQLite writers of different processes on one database file take turns through
`engine.db.FileLock` (embedded mode's web process and its store process, the CLI): a
writer waits for the one in progress and goes on the moment it commits, never through
SQLite's busy handler and its growing sleeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from engine.db import FileLock, Store, sqlite_engine
from tests.conftest import ROOT

HOLD = """
import sys, time
from engine.db import Store, sqlite_engine
store = Store(sqlite_engine("sqlite:///" + sys.argv[1]))
with store.begin() as conn:
    conn.exec_driver_sql("INSERT INTO t VALUES ('other process')")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_writer_waits_for_another_process_and_goes_on_when_it_commits(tmp_path: Path) -> None:
    path = tmp_path / "beacon.db"
    store = Store(sqlite_engine(f"sqlite:///{path}"))
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (who TEXT)")
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "1.0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "holding\n"
        with store.begin() as conn:
            # Only once the other process committed: its row is there.
            rows = [r[0] for r in conn.execute(sa.text("SELECT who FROM t"))]
            conn.exec_driver_sql("INSERT INTO t VALUES ('this process')")
        assert rows == ["other process"]
        assert other.wait(10) == 0
    finally:
        other.kill()
        other.wait()
        assert other.stdout is not None
        other.stdout.close()
        store.dispose()


def test_a_writer_that_may_not_wait_gives_up_at_once_while_another_process_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "beacon.db"
    store = Store(sqlite_engine(f"sqlite:///{path}"))
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (who TEXT)")
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "5.0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "holding\n"
        try:
            with store.begin(wait=0):
                raise AssertionError("took the lock another process holds")
        except sa.exc.OperationalError as exc:
            assert "database is locked" in str(exc)
    finally:
        other.kill()
        other.wait()
        assert other.stdout is not None
        other.stdout.close()
        store.dispose()


def test_the_lock_is_the_processes_own_after_a_fork(tmp_path: Path) -> None:
    # A forked child (Granian's web process) opens the lock file again: a lock held through
    # an inherited descriptor would be its parent's too.
    lock = FileLock(str(tmp_path / "x.lock"))
    assert lock.acquire(30)
    before = lock._fd
    assert before is not None
    lock.release()
    lock._pid = -1  # as if in another process
    assert lock.acquire(30)
    assert lock._fd != before
    lock.release()
    lock.close()
    os.close(before)
