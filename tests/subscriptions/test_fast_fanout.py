"""Fast fan-out against stand-ins that check requests as SendGrid and Twilio do: email as
requests of up to 1,000 personalizations with each person's own links, webhooks
concurrently within a bound, SMS at the configured rate, and a flaky provider that still
leaves everyone with exactly one message."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine import subscriber_links as links
from engine import vault
from engine.runtime import Runtime, install
from engine.security import new_token
from engine.tables import deadlines as deadlines_table
from engine.tables import deliveries, incident_updates, subscribers, utcnow
from engine.tables import outbox as outbox_table
from tests.standins import SendGrid, Twilio
from tests.support import RecordingServer
from workers import fanout

from .conftest import BASE_URL, Site, drain, make_site, open_incident, settings_for


@pytest.fixture
def sendgrid() -> Iterator[SendGrid]:
    with SendGrid() as standin:
        yield standin


@pytest.fixture
def twilio() -> Iterator[Twilio]:
    with Twilio() as standin:
        yield standin


def _runtime(
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    server: RecordingServer,
    **extra: str,
) -> Runtime:
    return install(make_runtime(settings_for(tmp_path, server, **extra)))


def _add(rt: Runtime, site: Site, channel: str, addresses: list[str]) -> None:
    with rt.store.begin() as conn:
        conn.execute(
            subscribers.insert(),
            [
                {
                    "page_id": site.page_id,
                    "channel": channel,
                    "address": address,
                    "confirmed": True,
                    "link_selector": new_token(16),
                    "webhook_secret": "whsec_test" if channel == "webhook" else None,
                }
                for address in addresses
            ],
        )


def _open(rt: Runtime, channel: str, addresses: list[str]) -> None:
    """A page whose confirmed subscribers are `addresses` on `channel`, and an incident just
    opened on its api service (nothing sent yet)."""
    site = make_site(rt)
    _add(rt, site, channel, addresses)
    open_incident(rt, site)


def _first_share_sent(
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    server: RecordingServer,
    sendgrid: SendGrid,
    monkeypatch: pytest.MonkeyPatch,
    people: int,
) -> Runtime:
    """The incident's fan-out to `people` email subscribers in shares of 100, run by the
    handler itself once: it sends the first share and leaves the rest to share jobs."""
    monkeypatch.setattr(fanout, "CHUNK", 100)
    rt = _runtime(tmp_path, make_runtime, server, BEACON_SENDGRID_API_URL=sendgrid.url)
    _open(rt, "email", [f"user{n}@example.com" for n in range(people)])
    with rt.store.read() as conn:
        update_id = conn.execute(sa.select(sa.func.max(incident_updates.c.id))).scalar_one()
    fanout.handle_incident_update(rt, [{"update_id": update_id}])
    return rt


def test_email_goes_as_requests_of_up_to_1000_with_each_persons_own_links(
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    server: RecordingServer,
    sendgrid: SendGrid,
) -> None:
    rt = _runtime(tmp_path, make_runtime, server, BEACON_SENDGRID_API_URL=sendgrid.url)
    _open(rt, "email", [f"user{n}@example.com" for n in range(2500)])
    drain(rt)
    assert sendgrid.failed == 0 and sendgrid.requests == 3  # 1000 + 1000 + 500
    assert sorted(len(m["personalizations"]) for m in sendgrid.mails) == [500, 1000, 1000]
    assert len(sendgrid.accepted) == 2500 and set(sendgrid.accepted.values()) == {1}
    with rt.store.read() as conn:
        ring = vault.of(conn)
        query = sa.select(subscribers)
        tokens = {r.address: links.link_token(ring, r) for r in conn.execute(query)}
    rendered = sendgrid.rendered()
    assert len(rendered) == 2500
    for address, subject, text in rendered:
        assert subject == "[Acme Status] API errors"
        link = f"{BASE_URL}/p/acme/subscriptions/unsubscribe/{tokens[address]}"
        assert f"Unsubscribe: {link}" in text, address
        manage = f"{BASE_URL}/p/acme/subscriptions/manage/{tokens[address]}"
        assert f"Change what you follow: {manage}" in text, address
    for mail in sendgrid.mails:
        for p in mail["personalizations"]:
            token = tokens[p["to"][0]["email"]]
            assert p["headers"]["List-Unsubscribe"].endswith(f"/unsubscribe/{token}>")


def test_an_address_sendgrid_refuses_fails_alone_not_its_batch(
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    server: RecordingServer,
    sendgrid: SendGrid,
) -> None:
    rt = _runtime(tmp_path, make_runtime, server, BEACON_SENDGRID_API_URL=sendgrid.url)
    _open(rt, "email", ["a@example.com", "not-an-address", "b@example.com"])
    drain(rt)
    assert sorted(sendgrid.accepted) == ["a@example.com", "b@example.com"]
    with rt.store.read() as conn:
        rows = conn.execute(
            sa.select(subscribers.c.address, deliveries.c.status, deliveries.c.last_error).join(
                subscribers, subscribers.c.id == deliveries.c.subscriber_id
            )
        ).all()
    outcome = {r.address: (r.status, r.last_error) for r in rows}
    assert outcome["a@example.com"][0] == outcome["b@example.com"][0] == "sent"
    assert outcome["not-an-address"][0] == "failed"
    assert "not an email address" in (outcome["not-an-address"][1] or "")


class _CountingReceiver:
    """Webhook receiver that takes a while and records how many requests were in flight."""

    def __init__(self, seconds: float) -> None:
        self.in_flight = 0
        self.most = 0
        self.paths: list[str] = []
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    outer.in_flight += 1
                    outer.most = max(outer.most, outer.in_flight)
                    outer.paths.append(self.path)
                time.sleep(seconds)
                with lock:
                    outer.in_flight -= 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 256
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_go_out_concurrently_within_the_bound(
    tmp_path: Path, make_runtime: Callable[..., Runtime], server: RecordingServer
) -> None:
    receiver = _CountingReceiver(0.3)
    try:
        rt = _runtime(tmp_path, make_runtime, server, BEACON_WEBHOOK_CONCURRENCY="10")
        _open(rt, "webhook", [f"{receiver.url}/hook/{n}" for n in range(60)])
        drain(rt)
    finally:
        receiver.close()
    # Each webhook: the incident and its component's change, once each.
    assert len(receiver.paths) == 120 and len(set(receiver.paths)) == 60
    assert 1 < receiver.most <= 10


def test_name_lookups_keep_up_with_the_webhook_concurrency(
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each webhook's name is looked up in a thread (the lookup blocks); a slow resolver
    must not hold the fan-out to asyncio's default pool of cpu_count + 4 threads."""
    from adapters.channels import outbound

    port = int(server.url.rsplit(":", 1)[1])
    lock = threading.Lock()
    counts = {"now": 0, "most": 0}

    def slow_resolver(host: str, port: int) -> list[str]:
        with lock:
            counts["now"] += 1
            counts["most"] = max(counts["most"], counts["now"])
        time.sleep(0.3)
        with lock:
            counts["now"] -= 1
        return ["127.0.0.1"]

    monkeypatch.setattr(outbound, "system_resolver", slow_resolver)
    rt = _runtime(tmp_path, make_runtime, server, BEACON_WEBHOOK_CONCURRENCY="20")
    _open(rt, "webhook", [f"http://hook{n}.test:{port}/hook" for n in range(20)])
    drain(rt)
    assert len(server.requests) == 40  # the incident and its component's change, each
    assert counts["most"] > 10, counts


def test_sms_go_out_at_the_configured_rate(
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    server: RecordingServer,
    twilio: Twilio,
) -> None:
    rt = _runtime(
        tmp_path, make_runtime, server, BEACON_TWILIO_API_URL=twilio.url, BEACON_TWILIO_RATE="5"
    )
    _open(rt, "sms", [f"+49151000000{n:02d}" for n in range(6)])
    drain(rt)
    assert len(twilio.accepted) == 6 and set(twilio.accepted.values()) == {1}
    # Five a second: six sends span at least a second (less a little network jitter).
    assert twilio.times[-1] - twilio.times[0] >= 0.9


def test_a_provider_failing_30_percent_still_leaves_each_person_one_email(
    tmp_path: Path, make_runtime: Callable[..., Runtime], server: RecordingServer
) -> None:
    with SendGrid(fail_rate=0.3) as sendgrid:
        rt = _runtime(tmp_path, make_runtime, server, BEACON_SENDGRID_API_URL=sendgrid.url)
        _open(rt, "email", [f"user{n}@example.com" for n in range(3000)])
        for _ in range(30):
            drain(rt)
            with rt.store.read() as conn:
                left = conn.execute(
                    sa.select(sa.func.count()).where(deliveries.c.status != "sent")
                ).scalar_one()
            if not left:
                break
            with rt.store.begin() as conn:  # the backoff's time passes
                conn.execute(deliveries.update().values(next_attempt_at=utcnow()))
                conn.execute(
                    deadlines_table.update()
                    .where(deadlines_table.c.kind.startswith("notify."))
                    .values(due_at=utcnow())
                )
    assert sendgrid.failed > 0
    assert len(sendgrid.accepted) == 3000 and set(sendgrid.accepted.values()) == {1}
    with rt.store.read() as conn:
        kinds = conn.execute(sa.select(deadlines_table.c.kind)).scalars().all()
    assert "notify.resume" not in kinds  # nothing left to retry


def test_a_large_notice_is_shared_out_as_chunk_jobs_and_each_person_hears_once(
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    server: RecordingServer,
    sendgrid: SendGrid,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt = _first_share_sent(tmp_path, make_runtime, server, sendgrid, monkeypatch, 450)
    # This run sent the first 100; four jobs share the other 350.
    assert sum(sendgrid.accepted.values()) == 100
    assert rt.queues.queue("beacon-notify").count >= 4
    drain(rt)
    assert len(sendgrid.accepted) == 450 and set(sendgrid.accepted.values()) == {1}
    with rt.store.read() as conn:
        kinds = conn.execute(sa.select(deadlines_table.c.kind)).scalars().all()
    assert "notify.chunk" not in kinds  # each job cancelled its share's deadline


def test_a_share_whose_job_was_lost_runs_from_its_deadline(
    tmp_path: Path,
    make_runtime: Callable[..., Runtime],
    server: RecordingServer,
    sendgrid: SendGrid,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt = _first_share_sent(tmp_path, make_runtime, server, sendgrid, monkeypatch, 250)
    assert sum(sendgrid.accepted.values()) == 100
    rt.queues.queue("beacon-notify").empty()  # Redis lost the two share jobs
    with rt.store.begin() as conn:  # the outbox job that ran the handler is done
        conn.execute(outbox_table.update().values(done_at=utcnow()))
    drain(rt)
    assert sum(sendgrid.accepted.values()) == 100
    with rt.store.begin() as conn:  # a lease later
        conn.execute(
            deadlines_table.update()
            .where(deadlines_table.c.kind == "notify.chunk")
            .values(due_at=utcnow())
        )
    drain(rt)
    assert len(sendgrid.accepted) == 250 and set(sendgrid.accepted.values()) == {1}
