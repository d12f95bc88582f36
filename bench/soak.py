"""Soak: Beacon scaled under a steady load for a while, then what it took.

    python bench/soak.py [--seconds 300] [--rate 1000] [--viewers 50] [--streams 200]

Starts the fault harness's cluster (tests/faults/cluster.py: its own PostgreSQL and Redis,
two `beacon serve`, two `beacon worker`) as a user would: PostgreSQL with its defaults
(the fault harness turns fsync off; the soak does not) and Beacon with its defaults (the
environment only points it at its database, Redis and the SendGrid stand-in); then for
`--seconds`:

- sends Alertmanager deliveries at up to `--rate` a second over 500 alerts, spread over
  both web processes; `--changes` of them (default 10 %) fire or resolve an alert (each
  firing opens an incident that two subscribers hear about), the rest repeat an alert's
  state as Alertmanager does every group_interval; reports the rate it sustained;
- `--viewers` page views a second (the page and its summary.json), with p50/p99;
- `--streams` open live-update streams (spread over client addresses 127.0.0.x, since one
  address may hold 32), and how many are still open at the end;
- every 2 s a probe alert flips the Website service; the time from the webhook's 202 until
  both processes' summary.json show it is "webhook to page", with p50/p99;
- each process's memory (RSS: every `beacon serve` with its web process, every `beacon
  worker` with its template renderers) at start, after a warm-up and at the end, and the
  growth after the warm-up.

Nothing asserts: it prints. The load generator shares the machine's cores with Beacon:
the rate it reaches is a floor of what Beacon would take from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.cluster import SOURCES, Cluster  # noqa: E402
from tests.faults.load import Alert, _payload  # noqa: E402

WARM_UP = 20.0


def rss_mib(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")  # gone (a template renderer replaced)
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def processes(cluster: Cluster) -> dict[str, int]:
    """Every process of Beacon's: each `beacon serve` (Granian's supervisor) and the web
    process it runs, each `beacon worker`, and their template renderers."""
    found = {}
    tops = [(f"serve {n}", web.proc) for n, web in enumerate(cluster.webs, 1)]
    tops += [(f"worker {n}", proc) for n, proc in enumerate(cluster.workers, 1)]
    for name, proc in tops:
        assert proc is not None
        found[name] = proc.pid
        for m, child in enumerate(children(proc.pid), 1):
            found[f"{name} child {m}"] = child
            for k, grandchild in enumerate(children(child), 1):
                found[f"{name} child {m}.{k}"] = grandchild
    return found


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Soak:
    def __init__(self, cluster: Cluster, args: argparse.Namespace) -> None:
        self.cluster = cluster
        self.args = args
        self.acked = 0
        self.failed = 0
        self.views: list[float] = []
        self.view_errors = 0
        self.to_page: list[float] = []
        self.streams_open = 0
        self.stop_at = 0.0
        self.random = random.Random(5)

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            self.stop_at = time.monotonic() + self.args.seconds
            await asyncio.gather(
                self.deliveries(client),
                self.viewers(client),
                self.streams(),
                self.probe(client),
            )

    async def deliveries(self, client: httpx.AsyncClient) -> None:
        alerts = [
            Alert(f"s{n}", "am1" if n % 2 else "am2", ("api", "db")[n % 2]) for n in range(500)
        ]
        gate = asyncio.Semaphore(64)
        n = 0
        started = time.monotonic()

        async def one(alert: Alert, body: dict[str, Any], web: str) -> None:
            async with gate:
                try:
                    answer = await client.post(
                        f"{web}/api/v1/events/{SOURCES[alert.source]}", json=body
                    )
                    if answer.status_code == 202:
                        self.acked += 1
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1

        tasks: set[asyncio.Task[None]] = set()
        while time.monotonic() < self.stop_at:
            due = started + n / self.args.rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if len(tasks) >= 64:
                # The server is behind: the rate is what it sustains, not what was asked.
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            alert = alerts[n % len(alerts)]
            now = datetime.now(UTC)
            if alert.started is not None and self.random.random() >= self.args.changes:
                # As Alertmanager does every group_interval: the same state again.
                if alert.firing:
                    body = _payload(alert, "firing", alert.started, None)
                else:
                    body = _payload(alert, "resolved", alert.started, alert.ended or now)
            elif alert.firing:
                alert.ended = now
                body = _payload(alert, "resolved", alert.started or now, now)
                alert.firing = False
            else:
                alert.started = now
                body = _payload(alert, "firing", now, None)
                alert.firing = True
            web = self.cluster.webs[n % 2].url
            task = asyncio.create_task(one(alert, body, web))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)

    async def viewers(self, client: httpx.AsyncClient) -> None:
        """`--viewers` page views a second, each started on time whatever the previous
        one's answer took (a visitor does not wait for another's page); at most 200 at once."""
        gate = asyncio.Semaphore(200)
        tasks: set[asyncio.Task[None]] = set()

        async def view(web: str, path: str) -> None:
            async with gate:
                began = time.monotonic()
                try:
                    ok = (await client.get(web + path)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.views.append(time.monotonic() - began)
                else:
                    self.view_errors += 1

        n = 0
        started = time.monotonic()
        while time.monotonic() < self.stop_at:
            due = started + n / self.args.viewers
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            web = self.cluster.webs[n % 2].url
            path = "/p/acme/" if n % 2 else "/p/acme/api/v2/summary.json"
            task = asyncio.create_task(view(web, path))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)

    async def streams(self) -> None:
        writers = []
        for n in range(self.args.streams):
            web = self.cluster.webs[n % 2]
            address = f"127.0.0.{2 + n // 30}"
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", web.port, local_addr=(address, 0)
                )
                writer.write(b"GET /p/acme/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                if b" 200 " in head.split(b"\r\n", 1)[0]:
                    writers.append((reader, writer))
                else:
                    writer.close()
            except OSError:
                continue
        while time.monotonic() < self.stop_at:
            await asyncio.sleep(1)
        self.streams_open = sum(1 for _, w in writers if not w.is_closing())
        for _, writer in writers:
            writer.close()

    async def probe(self, client: httpx.AsyncClient) -> None:
        alert = Alert("probe", "am1", "web")
        await asyncio.sleep(WARM_UP)
        while time.monotonic() < self.stop_at - 10:
            now = datetime.now(UTC)
            firing = not alert.firing
            if firing:
                alert.started = now
                body = _payload(alert, "firing", now, None)
            else:
                body = _payload(alert, "resolved", alert.started or now, now)
            alert.firing = firing
            answer = await client.post(
                f"{self.cluster.webs[0].url}/api/v1/events/{SOURCES['am1']}", json=body
            )
            if answer.status_code != 202:
                continue
            acked = time.monotonic()
            want = "major_outage" if firing else "operational"
            while time.monotonic() - acked < 30:
                shown = 0
                for web in self.cluster.webs:
                    try:
                        found = (await client.get(web.url + "/p/acme/api/v2/summary.json")).json()
                    except (httpx.HTTPError, ValueError):
                        continue
                    status = {c["name"]: c["status"] for c in found["components"]}["Website"]
                    shown += status == want
                if shown == len(self.cluster.webs):
                    self.to_page.append(time.monotonic() - acked)
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--viewers", type=float, default=50)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument(
        "--changes",
        type=float,
        default=0.1,
        help="share of deliveries that change an alert's state (the rest repeat it)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="beacon-soak-") as tmp:
        cluster = Cluster(Path(tmp))
        cluster.start()
        try:
            soak = Soak(cluster, args)
            pids = processes(cluster)
            idle = {name: rss_mib(pid) for name, pid in pids.items()}

            async def measured() -> dict[str, float]:
                task = asyncio.create_task(soak.run())
                await asyncio.sleep(WARM_UP)
                # Processes started since (template renderers) are measured from here.
                pids.update(processes(cluster))
                start = {name: rss_mib(pid) for name, pid in pids.items()}
                await task
                return start

            began = time.monotonic()
            start = asyncio.run(measured())
            took = time.monotonic() - began
            end = {name: rss_mib(pid) for name, pid in pids.items()}
            backlog = cluster.sql("SELECT count(*) FROM alert_events WHERE evaluated_at IS NULL")
        finally:
            cluster.close()
    print(f"soak: {took:.0f} s, scaled (PostgreSQL, Redis, 2 serve, 2 worker), 2-core machine")
    print(
        f"deliveries: asked {args.rate:.0f}/s, acknowledged {soak.acked} "
        f"({soak.acked / took:.0f}/s), failed {soak.failed}; unevaluated at the end {backlog[0][0]}"
    )
    print(
        f"page views: {len(soak.views)} ({len(soak.views) / took:.0f}/s), errors "
        f"{soak.view_errors}, p50 {pct(soak.views, 0.5) * 1000:.0f} ms, "
        f"p99 {pct(soak.views, 0.99) * 1000:.0f} ms"
    )
    print(f"live streams: {soak.streams_open} of {args.streams} still open at the end")
    print(
        f"webhook to page (both processes): {len(soak.to_page)} probes, p50 "
        f"{pct(soak.to_page, 0.5) * 1000:.0f} ms, p99 {pct(soak.to_page, 0.99) * 1000:.0f} ms"
        + (f", mean {statistics.mean(soak.to_page) * 1000:.0f} ms" if soak.to_page else "")
    )
    print("memory (RSS MiB) at start, after the warm-up -> at the end (growth after warm-up):")
    for name in start:
        growth = (end[name] - start[name]) / start[name] * 100 if start[name] else float("nan")
        first = f"{idle[name]:.0f}" if name in idle else "-"
        print(f"  {name}: {first}, {start[name]:.0f} -> {end[name]:.0f} ({growth:+.1f} %)")


if __name__ == "__main__":
    main()
