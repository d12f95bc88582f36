"""A scaled Beacon of the harness's own: a PostgreSQL cluster (`initdb` in a temporary
directory) and a `redis-server` on free ports, two `beacon serve` and two `beacon worker`,
a SendGrid stand-in and a subscriber's webhook, all on loopback; each part can be killed,
stopped and started again without touching the machine's own services."""

from __future__ import annotations

import glob
import http.server
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from engine.db import Store, create_store
from engine.settings import Settings
from tests.conftest import ROOT, free_port
from tests.support import RedisServer, Served, beacon, beacon_env, stop, wait_for

CONFIG = """
teams: [{key: platform}]
services:
  - {key: api, name: Public API, team: platform}
  - {key: db, name: Database, team: platform}
  - {key: web, name: Website, team: platform}
alert_sources:
  - {key: am1, name: Alertmanager one, type: alertmanager, team: platform,
     integration_key: faults-am1-key-000001}
  - {key: am2, name: Alertmanager two, type: alertmanager, team: platform,
     integration_key: faults-am2-key-000002}
incident_templates:
  - {key: down, team: platform, title: "Down: {{ event.labels.alert_id }}",
     message: "Investigating.", resolve_message: "Recovered."}
status_pages:
  - {slug: acme, name: ACME Status, type: public, teams: [platform],
     services: [api, db, web], active: true}
rules: [rules.yaml]
"""

RULES = """version: 1
rules:
  - id: down
    match: {labels.alertname: Down}
    service_from: labels.service
    then:
      - set_status: major_outage
      - open_incident: {template: down, notify: true}
"""

SOURCES = {"am1": "faults-am1-key-000001", "am2": "faults-am2-key-000002"}


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("initdb is not installed (Debian: postgresql)")
    return Path(initdb).parent


class Postgres:
    """A PostgreSQL cluster in `directory`, on a free port, as the `postgres` user when the
    harness runs as root (initdb refuses root)."""

    def __init__(self, settings: Sequence[str] = ()) -> None:
        #: `-c name=value` options on top of PostgreSQL's defaults.
        self.settings = tuple(settings)
        # Its own directory under /tmp: the postgres user must reach it, and pytest's
        # temporary directories are root's alone.
        self.directory = Path(tempfile.mkdtemp(prefix="beacon-faults-pg-"))
        self.data = self.directory / "pgdata"
        self.port = free_port()
        self.bin = _pg_bin()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/beacon"
        self._as: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=120, check=check
        )

    def init(self) -> None:
        if self._as:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()
        self._run(
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "beacon",
        )

    def start(self) -> None:
        options = " ".join(
            [f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"]
            + [f"-c {setting}" for setting in self.settings]
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


class StandIn:
    """A recording HTTP server: SendGrid (`/v3/mail/send`) or a subscriber's webhook. It
    can be made slow (`delay`) or failing (`failing`: 503); it counts what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[bytes] = []
        self.refused = 0
        self.delay = 0.0
        self.failing = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.failing:
                    outer.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.accepted.append(body)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: The fault harness's PostgreSQL settings (the soak runs on PostgreSQL's defaults).
FAULTS_POSTGRES = ("max_connections=200",)


class Cluster:
    """Beacon scaled on its own PostgreSQL and Redis, with two web and two worker processes
    (`postgres`: settings on top of PostgreSQL's defaults; `coalescing_off`: every step is
    a message of its own to every subscriber; `outbox_lease`: BEACON_OUTBOX_LEASE_SECONDS)."""

    def __init__(
        self,
        directory: Path,
        postgres: Sequence[str] = (),
        *,
        coalescing_off: bool = False,
        outbox_lease: float | None = None,
    ) -> None:
        self.directory = directory
        self.pg = Postgres(postgres)
        self.redis = RedisServer(directory / "redis")
        self.sendgrid = StandIn()
        self.hook = StandIn()
        self.data = directory / "data"
        self.env = {
            "BEACON_DATABASE_URL": self.pg.url,
            "BEACON_REDIS_URL": self.redis.url,
            "BEACON_REDIS_PREFIX": f"faults-{secrets.token_hex(3)}:",
            "BEACON_SECRET_KEY": secrets.token_hex(32),
            "BEACON_SENDGRID_API_KEY": "SG.faults",
            "BEACON_SENDGRID_API_URL": self.sendgrid.url,
            "BEACON_WEBHOOK_ALLOW_PRIVATE": "true",
            "BEACON_EMAIL_FROM": "status@faults.test",
        }
        if coalescing_off:
            # Each incident step to each subscriber, email too, as its own message: what
            # the harness counts ("each subscriber got each step once"). With coalescing
            # (docs/subscriptions.md) people get one message per window, and the hourly
            # cap holds the 21st for an hour, which no drain here would wait out.
            self.env |= {"BEACON_NOTIFY_WINDOW": "0", "BEACON_NOTIFY_HOURLY_CAP": "0"}
        if outbox_lease is not None:
            # Users' setting (docs/operations.md, Durability): how long a killed worker's
            # claimed work waits before another dispatcher takes it.
            self.env["BEACON_OUTBOX_LEASE_SECONDS"] = f"{outbox_lease:g}"
        self.webs = [
            Served(self.data, env=self.env, log_path=directory / f"serve-{n}.log") for n in (1, 2)
        ]
        self.workers: list[subprocess.Popen[bytes] | None] = [None, None]

    # --- life ------------------------------------------------------------------------------

    def start(self) -> dict[str, float]:
        """Start every part; returns how long each step took (seconds)."""
        took: dict[str, float] = {}
        began = time.monotonic()
        self.pg.init()
        self.redis.start()
        took["PostgreSQL and Redis"] = time.monotonic() - began
        began = time.monotonic()
        env = beacon_env(self.data, self.env)
        for args in (["db", "upgrade"], ["apply", str(self._config())]):
            done = beacon(args, env)
            if done.returncode != 0:
                raise RuntimeError(f"beacon {args[0]}: {done.stderr}")
        took["db upgrade, apply"] = time.monotonic() - began
        began = time.monotonic()
        # The workers and both web processes start together: each `beacon serve` waits for
        # its own readiness, and nothing in one's start depends on another's.
        for n in range(2):
            self.start_worker(n)
        failed: list[BaseException] = []

        def start(web: Served) -> None:
            try:
                web.start()
            except BaseException as exc:
                failed.append(exc)

        threads = [threading.Thread(target=start, args=(web,)) for web in self.webs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            raise failed[0]
        took["web and worker processes"] = time.monotonic() - began
        began = time.monotonic()
        self._subscribe()
        took["subscribers"] = time.monotonic() - began
        return took

    def _config(self) -> Path:
        (self.directory / "beacon.yaml").write_text(CONFIG)
        (self.directory / "rules.yaml").write_text(RULES)
        return self.config

    @property
    def config(self) -> Path:
        """The config file applied at start (with its rules file beside it)."""
        return self.directory / "beacon.yaml"

    def _subscribe(self) -> None:
        made = httpx.post(
            self.webs[0].url + "/p/acme/subscribe",
            json={"channel": "webhook", "address": self.hook.url + "/hook"},
        )
        assert made.status_code < 300, made.text
        made = httpx.post(
            self.webs[0].url + "/p/acme/subscribe",
            json={"channel": "email", "address": "reader@faults.test"},
        )
        assert made.status_code < 300, made.text
        # Confirmed as its owner would by the link (the harness reads no mailbox); the
        # confirmation email is not one of the steps counted later.
        wait_for(lambda: self.sendgrid.accepted, 60, "the confirmation email")
        self.sql("UPDATE subscribers SET confirmed = true, confirm_selector = NULL")
        self.sendgrid.accepted.clear()

    def start_worker(self, n: int) -> None:
        log = open(self.directory / f"worker-{n + 1}.log", "a")  # noqa: SIM115 - the child's
        self.workers[n] = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker"],
            env=beacon_env(self.data, self.env),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill_worker(self, n: int) -> None:
        proc = self.workers[n]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for proc in self.workers:
            if proc is not None:
                stop(proc)
        for web in self.webs:
            web.stop()
        self.redis.stop()
        self.pg.remove()
        self.sendgrid.close()
        self.hook.close()

    # --- reading the store -----------------------------------------------------------------

    def store(self) -> Store:
        """The cluster's store, as Beacon's processes open it (the caller disposes of it)."""
        settings = Settings(
            database_url=self.pg.url, secret_key=SecretStr(self.env["BEACON_SECRET_KEY"])
        )
        return create_store(settings)

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.pg.url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(statement, params or None)
            return list(cursor.fetchall()) if cursor.description else []

    def drained(self) -> bool:
        """Every event evaluated, every outbox row done, no delivery waiting."""
        try:
            [(events, outbox, deliveries)] = self.sql(
                "SELECT (SELECT count(*) FROM alert_events WHERE evaluated_at IS NULL),"
                " (SELECT count(*) FROM outbox WHERE done_at IS NULL),"
                " (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending'))"
            )
        except Exception:
            return False
        return events == 0 and outbox == 0 and deliveries == 0

    def wait_drained(self, seconds: float) -> bool:
        """Whether the backlog drained within `seconds`."""
        try:
            wait_for(self.drained, seconds, "the backlog to drain", poll=0.25)
        except AssertionError:
            return False
        return True

    def backlog(self) -> str:
        """What is left to do, in words (for a table row that did not drain)."""
        try:
            [(events,)] = self.sql("SELECT count(*) FROM alert_events WHERE evaluated_at IS NULL")
            kinds = self.sql(
                "SELECT kind, count(*), max(attempts) FROM outbox WHERE done_at IS NULL"
                " GROUP BY kind ORDER BY kind"
            )
            [(deliveries,)] = self.sql(
                "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending')"
            )
        except Exception as exc:
            return f"store unreadable: {exc}"
        outbox = ", ".join(f"{k} {n} (attempts {a})" for k, n, a in kinds)
        return f"events {events}; outbox {outbox or 0}; deliveries {deliveries}"


def summary(url: str) -> dict[str, Any] | None:
    try:
        answer = httpx.get(url + "/p/acme/api/v2/summary.json", timeout=5)
    except httpx.HTTPError:
        return None
    return json.loads(answer.content) if answer.status_code == 200 else None
