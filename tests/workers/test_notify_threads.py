"""Embedded mode: notifications run on worker threads of their own, so receivers that drip
one byte a second hold those threads, never the ones that evaluate and render."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from engine import crud, incidents, outbox
from engine.runtime import Runtime, install
from engine.security import new_token
from engine.tables import outbox as outbox_table
from engine.tables import subscribers
from tests.subscriptions.conftest import make_site, settings_for
from tests.support import RecordingServer, wait_for
from workers import dispatch


class Drip:
    """A receiver that reads the request, then answers one byte a second; counts the
    connections it holds open."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
        try:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000:
                conn.sendall(bytes([byte]))
                if self.stop.wait(1):
                    break
        except OSError:
            pass  # the sender gave up at its deadline
        finally:
            conn.close()
            with self.lock:
                self.open -= 1

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def _done(rt: Runtime, ids: list[int]) -> bool:
    with rt.store.read() as conn:
        return all(
            conn.execute(
                sa.select(outbox_table.c.done_at.isnot(None)).where(outbox_table.c.id.in_(ids))
            ).scalars()
        )


def test_slow_receivers_never_delay_evaluation_or_rendering(
    tmp_path: Path, server: RecordingServer, make_runtime: Callable[..., Runtime]
) -> None:
    rt = install(make_runtime(settings_for(tmp_path, server)))
    assert rt.settings.embedded and rt.settings.embedded_notify_workers == 2
    site = make_site(rt)
    drip = Drip()
    with rt.store.begin() as conn:
        conn.execute(
            subscribers.insert(),
            [
                {
                    "page_id": site.page_id,
                    "channel": "webhook",
                    "address": f"{drip.url}/hook/{n}",
                    "confirmed": True,
                    "unsubscribe_token": new_token(),
                    "webhook_secret": "whsec_test",
                }
                for n in range(2)
            ],
        )
    try:
        with dispatch.running(rt):
            with rt.store.begin() as conn:
                incidents.create(
                    conn,
                    team_id=site.team_id,
                    title="API errors",
                    impacts={site.service_ids["api"]: "major_outage"},
                )
            rt.nudge.set()
            # The incident and the component change: two notification jobs, each holding
            # a notification thread on two dripping receivers.
            wait_for(lambda: drip.open >= 4, 30, "both notification threads to be dripping")
            with rt.store.begin() as conn:
                crud.pages_dirty(conn, page_ids=[site.page_id])
                outbox.emit(conn, "noop")
                ids = list(
                    conn.execute(
                        sa.select(outbox_table.c.id)
                        .where(outbox_table.c.done_at.is_(None))
                        .where(outbox_table.c.kind.in_(["pages.dirty", "noop"]))
                    ).scalars()
                )
            rt.nudge.set()
            started = time.monotonic()
            wait_for(lambda: _done(rt, ids), 8, "the render and the default job")
            still_dripping = drip.open
            waited = time.monotonic() - started
    finally:
        drip.close()
    assert ids
    # Rendering and the default queue finished while the receivers were still dripping.
    assert still_dripping >= 1, f"the drip had ended after {waited:.1f}s"
