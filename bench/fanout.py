"""How long an incident takes to reach every subscriber, in scaled mode: PostgreSQL, Redis and
`beacon worker` processes, with loopback stand-ins for SendGrid (checking requests as the
real API does) and for webhook receivers. Reported, never asserted.

    python -m bench.fanout [--email N] [--webhooks N] [--workers N]

Measures, per run: the time from the incident's commit to the last message the stand-in
accepted, and the RQ jobs the workers ran. Needs PostgreSQL on 127.0.0.1:5432 (the
`postgres` role, as the tests use it) and Redis on 127.0.0.1:6379; makes and drops a
database and a Redis key prefix of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import redis
from rq import Queue, Worker

from engine import incidents, migrate
from engine.db import create_store
from engine.queue import QUEUE_NAMES
from engine.security import new_token
from engine.settings import Settings
from engine.tables import subscribers
from tests.standins import SendGrid
from tests.subscriptions.conftest import make_site
from tests.support import beacon_env

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("BEACON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BEACON_TEST_REDIS", "redis://127.0.0.1:6379/0")


class Receivers:
    """Webhook receivers on one loopback port: read each POST (HTTP/1.1, kept alive), count
    it, answer 204 at once. An asyncio protocol on its own thread rather than the stdlib's
    threaded server, whose parsing cost more CPU per request than Beacon's sending did on
    this 2-core machine: the bench measures the sender."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        outer = self

        class Receiver(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport
                self.buffer = b""

            def data_received(self, data: bytes) -> None:
                self.buffer += data
                while True:
                    head, sep, rest = self.buffer.partition(b"\r\n\r\n")
                    if not sep:
                        return
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if len(rest) < length:
                        return
                    self.buffer = rest[length:]
                    outer.count += 1  # one thread: the loop's
                    outer.last = time.monotonic()
                    self.transport.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(loop.create_server(Receiver, "127.0.0.1", 0, backlog=1024))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._loop = loop
        threading.Thread(target=loop.run_forever, daemon=True).start()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def _jobs(prefix: str) -> int:
    """Jobs run by the workers that served this run's queues (RQ's own counters)."""
    connection = redis.Redis.from_url(REDIS)
    seen: dict[str, int] = {}
    for name in QUEUE_NAMES:
        for worker in Worker.all(
            connection=connection, queue=Queue(prefix + name, connection=connection)
        ):
            seen[worker.name] = worker.successful_job_count + worker.failed_job_count
    return sum(seen.values())


def main(emails: int, webhooks: int, workers: int, wait: float) -> None:
    name = f"beacon_bench_{secrets.token_hex(4)}"
    prefix = f"beacon-bench-{secrets.token_hex(4)}:"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    sendgrid = SendGrid(keep_mails=False)
    receivers = Receivers()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                "BEACON_DATABASE_URL": database,
                "BEACON_REDIS_URL": REDIS,
                "BEACON_REDIS_PREFIX": prefix,
                "BEACON_SECRET_KEY": secrets.token_urlsafe(48),
                "BEACON_BASE_URL": "http://status.bench",
                "BEACON_SENDGRID_API_KEY": "SG.test",
                "BEACON_SENDGRID_API_URL": sendgrid.url,
                "BEACON_EMAIL_FROM": "status@bench.test",
                "BEACON_WEBHOOK_ALLOW_PRIVATE": "true",
            }
            settings = Settings.from_env({"BEACON_DATA_DIR": tmp, **env})
            store = create_store(settings)
            migrate.upgrade(store)
            site = make_site(SimpleNamespace(store=store))  # type: ignore[arg-type]
            started = time.perf_counter()
            rows = [
                {
                    "page_id": site.page_id,
                    "channel": "email",
                    "address": f"user{n}@example.com",
                    "confirmed": True,
                    "link_selector": new_token(16),
                }
                for n in range(emails)
            ] + [
                {
                    "page_id": site.page_id,
                    "channel": "webhook",
                    "address": f"{receivers.url}/hook/{n}",
                    "confirmed": True,
                    "link_selector": new_token(16),
                    "webhook_secret": "whsec_YmVuY2htYXJrIHNlY3JldCBvZiAzMiBieXRlcyEhIQ==",
                }
                for n in range(webhooks)
            ]
            for start in range(0, len(rows), 5000):
                with store.begin() as conn:
                    conn.execute(subscribers.insert(), rows[start : start + 5000])
            print(
                f"subscribers: {emails} email, {webhooks} webhook "
                f"(inserted in {time.perf_counter() - started:.1f}s)"
            )
            for index in range(workers):
                log = open(Path(tmp) / f"worker-{index}.log", "w")  # noqa: SIM115
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "cli", "worker"],
                        env=beacon_env(Path(tmp) / "data", env),
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            time.sleep(4)  # each worker process takes ~1.3 s to start
            jobs_before = _jobs(prefix)
            t0 = time.monotonic()
            with store.begin() as conn:
                incidents.create(
                    conn,
                    team_id=site.team_id,
                    title="API errors",
                    message="We are investigating.",
                    impacts={site.service_ids["api"]: "major_outage"},
                )
            # Webhooks hear the incident and the component's change.
            wanted_hooks = 2 * webhooks
            deadline = t0 + wait
            while time.monotonic() < deadline:
                if sum(sendgrid.accepted.values()) >= emails and receivers.count >= wanted_hooks:
                    break
                time.sleep(0.2)
            time.sleep(2)  # let the workers' counters settle
            jobs = _jobs(prefix) - jobs_before
            load = Path("/proc/loadavg").read_text().split()[:3]
            print(
                f"email: {sum(sendgrid.accepted.values())} accepted by the stand-in in "
                f"{sendgrid.requests} requests ({sendgrid.failed} failed); last accepted "
                f"{(sendgrid.last_accepted or t0) - t0:.1f}s after the incident"
            )
            if webhooks:
                print(
                    f"webhooks: {receivers.count} of {wanted_hooks} received; last "
                    f"{(receivers.last or t0) - t0:.1f}s after the incident"
                )
            print(f"RQ jobs run: {jobs} ({workers} workers); load average {' '.join(load)}")
            store.dispose()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # still in a job: RQ's warm shutdown waits
                proc.kill()
                proc.wait()
        sendgrid.close()
        receivers.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=f"*{prefix.rstrip(':')}*", count=1000):
            client.delete(key)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--email", type=int, default=100_000)
    parser.add_argument("--webhooks", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait at most")
    args = parser.parse_args()
    main(args.email, args.webhooks, args.workers, args.wait)
