"""Embedded mode: notifications run on worker threads of their own, so receivers that drip
one byte a second hold those threads, never the ones that evaluate and render."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine import crud, outbox
from engine.runtime import Runtime, install
from engine.security import new_token
from engine.tables import outbox as outbox_table
from engine.tables import subscribers
from tests.subscriptions.conftest import make_site, open_incident, settings_for
from tests.support import (
    RecordingServer,
    data_store,
    deliver_alertmanager,
    serve_config,
    wait_for,
)
from workers import dispatch


class Drip:
    """A receiver that reads the request, then answers one byte a second; counts the
    connections it holds open."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = 0
        self.accepted = 0
        #: Seconds each finished connection was held open.
        self.held: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
                self.accepted += 1
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        started = time.monotonic()
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
                self.held.append(time.monotonic() - started)

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
                    "link_selector": new_token(16),
                    "webhook_secret": "whsec_test",
                }
                for n in range(2)
            ],
        )
    try:
        with dispatch.running(rt):
            open_incident(rt, site, message="")
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


CONFIG = """
teams:
  - {key: platform}
services:
  - {key: api, name: Public API, team: platform}
  - {key: db, name: Database, team: platform}
alert_sources:
  - {key: am, name: Alertmanager, type: alertmanager, team: platform,
     integration_key: drip-test-0123456789}
incident_templates:
  - {key: api-outage, team: platform, title: "API down", message: "Investigating.",
     services: {api: major_outage}}
status_pages:
  - {slug: acme, name: ACME Status, type: public, teams: [platform], services: [api, db]}
rules: [rules.yaml]
"""

RULES = """
version: 1
rules:
  - id: fire
    match: {source: am, labels.alertname: Fire}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {template: api-outage, notify: true}
  - id: ping
    match: {source: am, labels.alertname: ICMP ping failed}
    services: [db]
    then:
      - set_status: partial_outage
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_a_dripping_receiver_is_cut_off_at_the_deadline_while_a_running_server_evaluates(
    tmp_path: Path,
) -> None:
    """A real `beacon serve` (embedded): two webhook subscribers whose receiver answers one
    byte a second. While their deliveries hold the notification threads, a second alert is
    evaluated and its status is on the rendered page; each dripping request is cut off at
    the outbound deadline (10 s), recorded as a temporary failure that says so."""

    from adapters.channels.outbound import DEADLINE
    from engine.tables import deliveries

    drip = Drip()
    env = {"BEACON_WEBHOOK_ALLOW_PRIVATE": "true"}
    try:
        with serve_config(tmp_path, CONFIG, RULES, env) as client:
            for n in range(2):
                answer = client.post(
                    "/p/acme/subscribe",
                    json={"channel": "webhook", "address": f"{drip.url}/hook/{n}"},
                )
                assert answer.status_code == 201, answer.text
            deliver_alertmanager(client, "drip-test-0123456789", "firing_single.json")
            wait_for(lambda: drip.open >= 2, 30, "the webhooks to be dripping")
            dripping_since = time.monotonic()
            deliver_alertmanager(client, "drip-test-0123456789", "firing_grouped_nested_route.json")
            wait_for(
                lambda: "Partial Outage" in client.get("/p/acme/").text,
                8,
                "the second alert's status on the page",
            )
            evaluated_after = time.monotonic() - dripping_since
            assert drip.open >= 1, "the drip had ended: nothing was shown to happen meanwhile"
            wait_for(lambda: len(drip.held) >= 4, 60, "the first dripping requests to end")
            held = list(drip.held)
    finally:
        drip.close()
    assert evaluated_after < DEADLINE
    # Cut off at the deadline (a second or two late on a busy machine), not at the end of
    # the receiver's 1,000 bytes.
    assert held and all(seconds < DEADLINE + 5 for seconds in held), held
    with data_store(tmp_path / "data") as store, store.read() as conn:
        errors = (
            conn.execute(
                sa.select(deliveries.c.last_error).where(deliveries.c.last_error.isnot(None))
            )
            .scalars()
            .all()
        )
    assert len(errors) >= 4, errors
    assert all(f"did not answer within the {DEADLINE:g} s deadline" in e for e in errors), errors
