"""Delivery you can trust: attempts are real sends, the providers' Retry-After is honoured,
deliveries left behind are swept up, a running job keeps its lease, each step goes out once."""

from __future__ import annotations

import http.server
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import deadlines, outbox
from engine.runtime import Runtime, install
from engine.tables import deliveries, incident_updates, utcnow
from engine.tables import outbox as outbox_table
from tests.support import RecordingServer
from workers import dispatch, fanout

from .conftest import drain, emails, make_site, open_incident, sms_sent
from .test_notifications import subscribe


def _update_id(rt: Runtime) -> int:
    with rt.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.max(incident_updates.c.id))).scalar_one())


def _deliveries(rt: Runtime) -> list[Any]:
    with rt.store.read() as conn:
        return list(conn.execute(sa.select(deliveries).order_by(deliveries.c.id)))


def _notice(rt: Runtime) -> fanout.Notice:
    with rt.store.read() as conn:
        (notice,) = fanout.incident_notices(conn, rt.settings, _update_id(rt))
    return notice


def _seconds_from_now(at: datetime | None) -> float:
    assert at is not None
    return (at - utcnow()).total_seconds()


def test_claims_that_sent_nothing_are_not_attempts(rt: Runtime, server: RecordingServer) -> None:
    """A worker that claims and dies (or a queue that loses the job) costs no attempt."""
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    open_incident(rt, site, notify=True)
    notice = _notice(rt)
    fanout.expand(rt, notice, fanout.Source("notify.incident_update", {"update_id": 1}))
    for _ in range(3):
        (delivery,) = _deliveries(rt)
        fanout._claim(rt, [delivery.id])  # claimed, then the worker died before sending
        with rt.store.begin() as conn:
            conn.execute(deliveries.update().values(updated_at=utcnow() - timedelta(minutes=3)))
    (delivery,) = _deliveries(rt)
    assert delivery.status == "sending" and delivery.attempts == 0
    fanout.handle_incident_update(rt, [{"update_id": _update_id(rt)}])
    (delivery,) = _deliveries(rt)
    assert delivery.status == "sent" and delivery.attempts == 1
    assert len(server.requests) == 1


def test_sendgrids_retry_after_is_honoured(rt: Runtime, server: RecordingServer) -> None:
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    server.answer(429, {"errors": [{"message": "too many"}]}, headers={"Retry-After": "120"})
    open_incident(rt, site, notify=True)
    drain(rt)
    (delivery,) = _deliveries(rt)
    assert delivery.status == "pending" and delivery.attempts == 1
    assert 110 < _seconds_from_now(delivery.next_attempt_at) <= 120
    drain(rt)  # not due: nothing more is sent
    assert len(server.requests) == 1


def test_twilios_retry_after_is_honoured(rt: Runtime, server: RecordingServer) -> None:
    site = make_site(rt)
    subscribe(rt, site, "sms", "+4915112345678")
    server.answer(
        429,
        {"code": 20429, "message": "Too Many Requests", "status": 429},
        headers={"Retry-After": "90"},
    )
    open_incident(rt, site, notify=True)
    drain(rt)
    (delivery,) = _deliveries(rt)
    assert delivery.status == "pending" and "429" in (delivery.last_error or "")
    assert 80 < _seconds_from_now(delivery.next_attempt_at) <= 90
    assert len(sms_sent(server)) == 1


def test_without_retry_after_it_backs_off_and_gives_up_after_max_attempts(
    rt: Runtime, server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "MAX_ATTEMPTS", 3)
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    for _ in range(3):
        server.answer(503, {"errors": [{"message": "busy"}]})
    open_incident(rt, site, notify=True)
    update = {"update_id": _update_id(rt)}
    fanout.handle_incident_update(rt, [update])
    (delivery,) = _deliveries(rt)
    assert 3 < _seconds_from_now(delivery.next_attempt_at) <= fanout.backoff(1)
    for _ in range(2):
        with rt.store.begin() as conn:
            conn.execute(deliveries.update().values(next_attempt_at=utcnow()))
        fanout.handle_incident_update(rt, [update])
    (delivery,) = _deliveries(rt)
    assert delivery.status == "failed" and delivery.attempts == 3
    assert (delivery.last_error or "").startswith("gave up after 3 attempts: SendGrid answered 503")


def test_the_sweeper_resumes_deliveries_whose_worker_died(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    for n in range(3):
        subscribe(rt, site, "email", f"user{n}@example.com")
    open_incident(rt, site, notify=True)
    source = fanout.Source("notify.incident_update", {"update_id": _update_id(rt)})
    fanout.expand(rt, _notice(rt), source)
    with rt.store.begin() as conn:  # a worker claimed them all and died; the outbox is done
        conn.execute(
            deliveries.update().values(status="sending", updated_at=utcnow() - timedelta(minutes=3))
        )
        conn.execute(outbox_table.update().values(done_at=utcnow()))
    fanout.handle_sweep(rt, [{}])
    with rt.store.read() as conn:
        resume = deadlines.get(conn, fanout.RESUME, _notice(rt).key)
        sweep = deadlines.get(conn, fanout.SWEEP, fanout.SWEEP_KEY)
    assert resume is not None and resume.payload["kind"] == "notify.incident_update"
    assert sweep is not None and 50 < _seconds_from_now(sweep.due_at) <= 60
    drain(rt)
    assert {d.status for d in _deliveries(rt)} == {"sent"}
    assert sorted(e.to for e in emails(server)) == [f"user{n}@example.com" for n in range(3)]
    fanout.handle_sweep(rt, [{}])  # nothing is left behind now
    drain(rt)
    assert len(emails(server)) == 3


def test_a_resume_schedules_the_next_for_what_is_not_due_yet(
    rt: Runtime, server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches fail with different waits: the resume at the first one's time sends it
    and leaves a resume at the second one's time, not a wait for the sweeper's next pass."""
    monkeypatch.setattr(fanout, "SEND_BATCH", 1)
    site = make_site(rt)
    for n in range(2):
        subscribe(rt, site, "email", f"user{n}@example.com")
    server.answer(503, {"errors": [{"message": "busy"}]})
    server.answer(429, {"errors": [{"message": "too many"}]}, headers={"Retry-After": "40"})
    open_incident(rt, site, notify=True)
    fanout.handle_incident_update(rt, [{"update_id": _update_id(rt)}])
    first, second = _deliveries(rt)
    assert 35 < _seconds_from_now(second.next_attempt_at) <= 40
    with rt.store.begin() as conn:  # the first one's backoff passes
        conn.execute(
            deliveries.update().where(deliveries.c.id == first.id).values(next_attempt_at=utcnow())
        )
        resume = deadlines.get(conn, fanout.RESUME, _notice(rt).key)
        assert resume is not None
        deadlines.schedule(conn, fanout.RESUME, _notice(rt).key, utcnow(), resume.payload)
    drain(rt)
    first, second = _deliveries(rt)
    assert (first.status, second.status) == ("sent", "pending")
    with rt.store.read() as conn:
        resume = deadlines.get(conn, fanout.RESUME, _notice(rt).key)
    assert resume is not None and resume.due_at == second.next_attempt_at


class _SlowReceiver:
    """A webhook receiver that takes `seconds` to answer."""

    def __init__(self, seconds: float) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                self.rfile.read(int(self.headers.get("content-length") or 0))
                time.sleep(seconds)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_run_renews_the_lease_of_what_it_is_sending(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "LEASE_RENEW_EVERY", 0.2)
    site = make_site(rt)
    slow = _SlowReceiver(1.5)
    subscribe(rt, site, "webhook", f"{slow.url}/hook")
    open_incident(rt, site)
    run = threading.Thread(
        target=fanout.handle_incident_update, args=(rt, [{"update_id": _update_id(rt)}])
    )
    run.start()
    seen: set[datetime] = set()
    while run.is_alive():
        for delivery in _deliveries(rt):
            if delivery.status == "sending":
                seen.add(delivery.updated_at)
        time.sleep(0.05)
    run.join()
    slow.close()
    assert len(seen) >= 3, seen  # the claim, then renewals while the receiver was slow
    assert {d.status for d in _deliveries(rt)} == {"sent"}


def slow_handler(_rt: Runtime, _payloads: list[dict[str, Any]]) -> None:
    time.sleep(1.2)


def test_an_outbox_job_renews_its_claim_while_it_runs(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lease of 0.6 s (below what a setting allows): renewed every 0.2 s.
    monkeypatch.setattr(
        rt, "settings", rt.settings.model_copy(update={"outbox_lease_seconds": 0.6})
    )
    monkeypatch.setitem(rt.handlers, "test.slow", ("beacon-notify", f"{__name__}:slow_handler"))
    install(rt)
    with rt.store.begin() as conn:
        outbox.emit(conn, "test.slow", {})
    (row,) = outbox.claim(rt.store, "test")
    with rt.store.read() as conn:
        claimed = conn.execute(sa.select(outbox_table.c.claimed_at)).scalar_one()
    run = threading.Thread(target=dispatch.run_outbox, args=([row.id],))
    run.start()
    time.sleep(0.9)
    with rt.store.read() as conn:
        renewed = conn.execute(sa.select(outbox_table.c.claimed_at)).scalar_one()
    run.join()
    assert renewed > claimed + timedelta(seconds=0.5)


def test_each_step_goes_out_once_whatever_reruns_and_sweeps(
    rt: Runtime, server: RecordingServer
) -> None:
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    subscribe(rt, site, "webhook", f"{server.url}/hook")
    open_incident(rt, site, notify=True)
    drain(rt)
    sent = len(server.requests)
    assert sent == 3  # the email, the webhook's incident and its component change
    assert len(emails(server)) == 1
    update = {"update_id": _update_id(rt)}
    for _ in range(2):
        fanout.handle_incident_update(rt, [update])
        fanout.handle_resume(rt, [{"kind": "notify.incident_update", "payload": update}])
        fanout.handle_sweep(rt, [{}])
        drain(rt)
    assert len(server.requests) == sent
