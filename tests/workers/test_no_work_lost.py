"""No work is lost or doubled between a commit and the workers, across crashes and processes."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from engine import migrate
from engine.db import Store, create_store
from engine.settings import Settings
from engine.tables import maintenance_updates, maintenance_windows, outbox, utcnow
from tests.conftest import REDIS_URL, ROOT
from tests.support import beacon_env, serve, worker

CRASH_AFTER_COMMIT = """
import os, signal, sys
from datetime import timedelta
from engine import maintenance, migrate, outbox
from engine.db import create_store
from engine.settings import Settings
from engine.tables import services, teams, utcnow

store = create_store(Settings.from_env(os.environ))
migrate.upgrade(store)
with store.begin() as conn:
    team = conn.execute(teams.insert().values(key="platform", name="P")).inserted_primary_key[0]
    db = conn.execute(
        services.insert().values(team_id=team, key="db", name="DB")
    ).inserted_primary_key[0]
    now = utcnow()
    window = maintenance.create(
        conn, team_id=team, title="Upgrade", starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=2), service_ids=[db],
    )
    # The work the commit causes: start the window now (as if its deadline had fired).
    outbox.emit(conn, "deadline.maintenance.start", {"window_id": window})
# Committed; the process dies before anything is enqueued.
os.kill(os.getpid(), signal.SIGKILL)
"""


def _window_steps(store: Store) -> list[str]:
    with store.read() as conn:
        return list(
            conn.execute(
                sa.select(maintenance_updates.c.status).order_by(maintenance_updates.c.id)
            ).scalars()
        )


def test_work_committed_before_a_sigkill_runs_once_after_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = beacon_env(data)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_COMMIT], env=env, cwd=ROOT, timeout=60
    )
    assert crashed.returncode == -signal.SIGKILL

    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    with store.read() as conn:
        pending = conn.execute(sa.select(outbox.c.kind, outbox.c.done_at)).all()
    assert [(r.kind, r.done_at) for r in pending] == [("deadline.maintenance.start", None)]

    with serve(data):
        deadline = time.monotonic() + 30
        while _window_steps(store) != ["scheduled", "in_progress"] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # room for a second, wrong run to show itself
    assert _window_steps(store) == ["scheduled", "in_progress"]
    with store.read() as conn:
        row = conn.execute(
            sa.select(outbox.c.attempts, outbox.c.done_at).where(
                outbox.c.kind == "deadline.maintenance.start"
            )
        ).one()
    assert row.attempts == 1 and row.done_at is not None
    store.dispose()


def _schedule_window(store: Store, starts_in: float) -> int:
    from engine import maintenance
    from tests.factories import service, team

    now = utcnow()
    with store.begin() as conn:
        t = team(conn, name="Platform")
        db = service(conn, t, "db", name="DB")
        return maintenance.create(
            conn,
            team_id=t,
            title="Upgrade",
            starts_at=now + timedelta(seconds=starts_in),
            ends_at=now + timedelta(hours=1),
            service_ids=[db],
        )


def _fired(store: Store) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(outbox.c.kind == "deadline.maintenance.start")
            ).scalar_one()
        )


def _wait_started(store: Store, window: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.read() as conn:
            state = conn.execute(
                sa.select(maintenance_windows.c.status).where(maintenance_windows.c.id == window)
            ).scalar_one()
        if state == "in_progress":
            return
        time.sleep(0.1)
    raise AssertionError(f"window {window} did not start within {timeout}s")


def test_a_deadline_fires_once_in_embedded_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    window = _schedule_window(store, starts_in=2)
    with serve(data):
        _wait_started(store, window)
        time.sleep(1)
    assert _fired(store) == 1
    assert _window_steps(store) == ["scheduled", "in_progress"]
    store.dispose()


def test_a_deadline_fires_once_across_two_workers(
    tmp_path: Path, pg_url: str, redis_prefix: str
) -> None:
    data = tmp_path / "data"
    scaled = {
        "BEACON_DATABASE_URL": pg_url,
        "BEACON_REDIS_URL": REDIS_URL,
        "BEACON_REDIS_PREFIX": redis_prefix,
        "BEACON_SECRET_KEY": secrets.token_hex(16),
    }
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data), **scaled}))
    migrate.upgrade(store)
    window = _schedule_window(store, starts_in=2)
    with worker(data, scaled, tmp_path / "w1.log"), worker(data, scaled, tmp_path / "w2.log"):
        _wait_started(store, window)
        time.sleep(1)
    assert _fired(store) == 1, (tmp_path / "w1.log").read_text() + (tmp_path / "w2.log").read_text()
    assert _window_steps(store) == ["scheduled", "in_progress"]
    store.dispose()
