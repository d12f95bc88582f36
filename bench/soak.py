"""Soak: Beacon scaled under a steady load for a while, then what it took.

    python bench/soak.py [--seconds 300] [--warm-up 300] [--rate 1000] [--viewers 50]
                         [--streams 200] [--sample-every 10]

Starts the fault harness's cluster (tests/faults/cluster.py: its own PostgreSQL and Redis,
two `beacon serve`, two `beacon worker`) as a user would: PostgreSQL with its defaults
(the fault harness turns fsync off; the soak does not) and Beacon with its defaults (the
environment only points it at its database, Redis and the SendGrid stand-in); then, for
`--warm-up` seconds and `--seconds` more:

- sends Alertmanager deliveries at up to `--rate` a second over 500 alerts, spread over
  both web processes; `--changes` of them (default 10 %) fire or resolve an alert (each
  firing opens an incident that two subscribers hear about), the rest repeat an alert's
  state as Alertmanager does every group_interval (acknowledged, and stored once);
- `--viewers` page views a second (the page and its summary.json), with p50/p99;
- `--streams` open live-update streams (spread over client addresses 127.0.0.x, since one
  address may hold 32), and how many are still open at the end;
- every 2 s a probe alert flips the Website service; the time from the webhook's 202 until
  both processes' summary.json show it is "webhook to page", with p50/p99;
- every `--sample-every` seconds each process's memory (RSS: every `beacon serve` with its
  web process, every `beacon worker` with its template renderers), printed as a curve;
  the growth after the warm-up, and over the last half of the run, say whether it is flat.

Everything but the memory before the load is measured after the warm-up.

The load generator (this process, with the SendGrid and webhook stand-ins) shares the
machine's cores with Beacon, PostgreSQL and Redis: what it asks is not what it manages to
send. So the soak prints the rate asked, the rate sent and the rate acknowledged, how
long the generator waited on answers (at most `IN_FLIGHT` deliveries are in flight: while
they are all out, Beacon is the limit), how late its own event loop ran (a starved
generator) and the CPU each party used, so a reader can tell whose limit the sustained
rate is. Nothing asserts: it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.cluster import SOURCES, Cluster  # noqa: E402
from tests.faults.load import Alert, _payload  # noqa: E402

#: Deliveries in flight at most: when all are out, the generator waits on Beacon.
IN_FLIGHT = 64
#: Page views in flight at most (past it a view is not made, and counted).
VIEWS_IN_FLIGHT = 200
#: After the run, how long answers still out are waited for before they are given up.
LAST_ANSWERS = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


# --- processes --------------------------------------------------------------------------------


def _proc(pid: int, name: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        return None  # gone (a template renderer replaced)


def rss_mib(pid: int) -> float:
    text = _proc(pid, "status")
    for line in (text or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """CPU (user + system) the process used, with its waited-for children's if `reaped`."""
    text = _proc(pid, "stat")
    if text is None:
        return math.nan
    fields = text.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def children(pid: int) -> list[int]:
    text = _proc(pid, f"task/{pid}/children")
    return [int(p) for p in (text or "").split()]


def processes(cluster: Cluster) -> dict[str, int]:
    """Every process of Beacon's by a short name: `serveN` (Granian's supervisor) and
    `webN` (the web process it runs), `workerN` and its template renderers `workerN.rM`
    (a web process's renderers are `webN.rM`)."""
    found = {}
    for n, web in enumerate(cluster.webs, 1):
        assert web.proc is not None
        found[f"serve{n}"] = web.proc.pid
        for m, child in enumerate(children(web.proc.pid), 1):
            found[f"web{n}" if m == 1 else f"web{n}.{m}"] = child
            for k, grandchild in enumerate(children(child), 1):
                found[f"web{n}.r{k}"] = grandchild
    for n, proc in enumerate(cluster.workers, 1):
        assert proc is not None
        found[f"worker{n}"] = proc.pid
        for k, child in enumerate(children(proc.pid), 1):
            found[f"worker{n}.r{k}"] = child
    return found


def machine_busy() -> tuple[float, float]:
    """Seconds of CPU the whole machine has been busy and has had, over all cores."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(v) for v in first[:8]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / TICKS, sum(ticks) / TICKS


def postgres_pid(cluster: Cluster) -> int:
    return int((cluster.pg.data / "postmaster.pid").read_text().split()[0])


@dataclass
class Cpu:
    """CPU seconds used so far by each party of the soak."""

    beacon: float
    database: float
    generator: float
    machine: float
    capacity: float

    @classmethod
    def now(cls, cluster: Cluster, pids: dict[str, int]) -> Cpu:
        beacon = sum(v for v in (cpu_seconds(p) for p in pids.values()) if not math.isnan(v))
        postmaster = postgres_pid(cluster)
        database = cpu_seconds(postmaster, reaped=True) + sum(
            cpu_seconds(p) for p in children(postmaster)
        )
        assert cluster.redis.proc is not None
        database += cpu_seconds(cluster.redis.proc.pid)
        busy, capacity = machine_busy()
        return cls(beacon, database, time.process_time(), busy, capacity)

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.beacon - other.beacon,
            self.database - other.database,
            self.generator - other.generator,
            self.machine - other.machine,
            self.capacity - other.capacity,
        )


@dataclass
class Memory:
    """RSS of every process, sampled along the run."""

    cluster: Cluster
    pids: dict[str, int] = field(default_factory=dict)
    #: (seconds since the load began, {process: MiB}).
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def sample(self, at: float) -> dict[str, float]:
        # Processes started since (template renderers, started on first use) join here, and
        # a renderer that was replaced is followed in its successor.
        for name, pid in processes(self.cluster).items():
            if name not in self.pids or math.isnan(rss_mib(self.pids[name])):
                self.pids[name] = pid
        taken = {name: rss_mib(pid) for name, pid in self.pids.items()}
        self.samples.append((at, taken))
        return taken

    def at(self, when: float) -> dict[str, float]:
        """The sample taken nearest `when` (seconds since the load began)."""
        return min(self.samples, key=lambda s: abs(s[0] - when))[1]


async def finish(tasks: set[asyncio.Task[None]]) -> None:
    """Wait up to `LAST_ANSWERS` for requests still out at the end, then cancel them."""
    if tasks:
        _done, late = await asyncio.wait(set(tasks), timeout=LAST_ANSWERS)
        for task in late:
            task.cancel()


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def growth(before: float, after: float) -> float:
    return (after - before) / before * 100 if before else math.nan


# --- the load ---------------------------------------------------------------------------------


class Soak:
    def __init__(self, cluster: Cluster, args: argparse.Namespace) -> None:
        self.cluster = cluster
        self.args = args
        self.memory = Memory(cluster)
        self.measuring = False
        # Deliveries: counted from the warm-up's end.
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.ack_times: list[float] = []
        #: Seconds the generator waited with `IN_FLIGHT` deliveries out (Beacon's limit).
        self.waited = 0.0
        self.views: list[float] = []
        self.view_errors = 0
        self.views_asked = 0
        self.views_not_made = 0
        #: How late the generator's event loop woke for a timer (seconds): its own
        #: starvation, since every request it sends goes through that loop.
        self.lag: list[float] = []
        #: (evaluated events, events) in the store at the warm-up's end and at the end.
        self.evaluated: list[tuple[int, int]] = []
        self.to_page: list[float] = []
        self.streams_open = 0
        self.began = 0.0
        self.stop_at = 0.0
        self.random = random.Random(5)
        self.cpu: list[Cpu] = []
        self.load: list[tuple[float, float, float]] = []

    @property
    def warm_up(self) -> float:
        return float(self.args.warm_up)

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            self.began = time.monotonic()
            self.stop_at = self.began + self.warm_up + self.args.seconds
            await asyncio.gather(
                self.deliveries(client),
                self.viewers(client),
                self.streams(),
                self.probe(client),
                self.sampler(),
                self.lagging(),
            )

    async def sampler(self) -> None:
        """Memory every `--sample-every` seconds; CPU and load at the warm-up's end and at
        the end."""
        every = self.args.sample_every
        n = 0
        while True:
            at = n * every
            warm_up_ends = at >= self.warm_up and not self.measuring
            if warm_up_ends:
                at = self.warm_up
            wait = self.began + at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() >= self.stop_at:
                break
            self.memory.sample(at)
            if warm_up_ends:
                self.measuring = True
                await self.mark()
                if at < n * every:
                    continue  # the warm-up ended between two samples
            n += 1
        self.memory.sample(time.monotonic() - self.began)
        await self.mark()

    async def mark(self) -> None:
        """CPU, load and the store's evaluated events at the warm-up's end or at the end."""
        self.cpu.append(Cpu.now(self.cluster, self.memory.pids))
        self.load.append(os.getloadavg())
        [(evaluated, events)] = await asyncio.to_thread(
            self.cluster.sql,
            "SELECT count(*) FILTER (WHERE evaluated_at IS NOT NULL), count(*) FROM alert_events",
        )
        self.evaluated.append((int(evaluated), int(events)))

    async def lagging(self) -> None:
        """How late the event loop wakes for a 100 ms timer, all along the run."""
        while time.monotonic() < self.stop_at:
            due = time.monotonic() + 0.1
            await asyncio.sleep(0.1)
            if self.measuring:
                self.lag.append(time.monotonic() - due)

    async def deliveries(self, client: httpx.AsyncClient) -> None:
        alerts = [
            Alert(f"s{n}", "am1" if n % 2 else "am2", ("api", "db")[n % 2]) for n in range(500)
        ]
        headers = {"content-type": "application/json"}
        n = 0
        started = time.monotonic()

        async def one(body: bytes, url: str, counted: bool) -> None:
            began = time.monotonic()
            try:
                answer = await client.post(url, content=body, headers=headers)
                ok = answer.status_code == 202
            except httpx.HTTPError:
                ok = False
            if counted:
                self.acked += ok
                self.failed += not ok
                if ok:
                    self.ack_times.append(time.monotonic() - began)

        tasks: set[asyncio.Task[None]] = set()
        while time.monotonic() < self.stop_at:
            due = started + n / self.args.rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if len(tasks) >= IN_FLIGHT:
                # Every delivery is out and unanswered: Beacon is the limit, not the ask.
                waiting = time.monotonic()
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if self.measuring:
                    self.waited += time.monotonic() - waiting
            if not self.measuring:
                # The schedule starts again at the warm-up's end: being behind then is
                # not carried into the measured part.
                started = time.monotonic() - n / self.args.rate
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
            url = f"{self.cluster.webs[n % 2].url}/api/v1/events/{SOURCES[alert.source]}"
            task = asyncio.create_task(one(orjson.dumps(body), url, self.measuring))
            self.sent += self.measuring
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await finish(tasks)

    async def viewers(self, client: httpx.AsyncClient) -> None:
        """`--viewers` page views a second, each started on time whatever the previous
        one's answer took (a visitor does not wait for another's page). At most
        `VIEWS_IN_FLIGHT` at once: a view due while that many are unanswered is not made
        and is counted as such, so a slow server (or a starved generator) shows as views
        not made rather than as a queue of views that goes on after the run."""
        tasks: set[asyncio.Task[None]] = set()

        async def view(web: str, path: str, counted: bool) -> None:
            began = time.monotonic()
            try:
                ok = (await client.get(web + path)).status_code == 200
            except httpx.HTTPError:
                ok = False
            if not counted:
                return
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
            if not self.measuring:
                started = time.monotonic() - n / self.args.viewers
            n += 1
            if len(tasks) >= VIEWS_IN_FLIGHT:
                self.views_not_made += self.measuring
                continue
            self.views_asked += self.measuring
            web = self.cluster.webs[n % 2].url
            path = "/p/acme/" if n % 2 else "/p/acme/api/v2/summary.json"
            task = asyncio.create_task(view(web, path, self.measuring))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await finish(tasks)

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
        await asyncio.sleep(self.warm_up)
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


# --- the report -------------------------------------------------------------------------------


def report(soak: Soak, args: argparse.Namespace, backlog: int) -> None:
    measured = soak.memory.samples[-1][0] - soak.warm_up
    cpu = soak.cpu[-1] - soak.cpu[0]
    cores = cpu.capacity / measured if measured else math.nan
    load_at, load_end = soak.load[0], soak.load[-1]
    print(
        f"soak: {soak.warm_up:.0f} s of warm-up, then {measured:.0f} s measured; scaled "
        f"(PostgreSQL, Redis, 2 serve, 2 worker) on {cores:.0f} cores; load average "
        f"{load_at[0]:.1f} at the warm-up's end, {load_end[0]:.1f} at the end "
        f"(1 min; 5 min {load_end[1]:.1f})"
    )
    (evaluated_at, events_at), (evaluated_end, events_end) = soak.evaluated
    print(
        f"deliveries: asked {args.rate:.0f}/s; sent {soak.sent / measured:.0f}/s; "
        f"acknowledged (202) {soak.acked} ({soak.acked / measured:.0f}/s), failed "
        f"{soak.failed}; 202 in p50 {pct(soak.ack_times, 0.5) * 1000:.0f} ms, p99 "
        f"{pct(soak.ack_times, 0.99) * 1000:.0f} ms"
    )
    print(
        f"  stored as new events {(events_end - events_at) / measured:.0f}/s (a repeat of an "
        f"alert's state is acknowledged and kept once), evaluated "
        f"{(evaluated_end - evaluated_at) / measured:.0f}/s; backlog (stored, not yet "
        f"evaluated) {events_at - evaluated_at} after the warm-up, "
        f"{events_end - evaluated_end} at the end, {backlog} once the load had stopped"
    )
    share = soak.waited / measured * 100
    lag_p50, lag_p99 = pct(soak.lag, 0.5) * 1000, pct(soak.lag, 0.99) * 1000
    if lag_p50 > 50:
        limit = (
            "the machine's cores were saturated (the generator itself ran late), so these "
            "rates are what this machine did with everything on it, not Beacon's ceiling"
        )
    elif share >= 50:
        limit = "Beacon was the limit"
    elif soak.sent / measured < 0.95 * args.rate:
        limit = "the generator was the limit, not Beacon's answers"
    else:
        limit = "the rate asked was sent"
    print(
        f"  who limited the rate: the generator had all {IN_FLIGHT} deliveries in flight "
        f"and waited on Beacon {share:.0f} % of the time; its event loop woke late by "
        f"p50 {lag_p50:.0f} ms, p99 {lag_p99:.0f} ms (its own CPU starvation): {limit}"
    )
    others = max(0.0, cpu.machine - cpu.beacon - cpu.database - cpu.generator)
    print(
        f"  CPU over the measured {measured:.0f} s (core-seconds; the machine had "
        f"{cpu.capacity:.0f}): Beacon's processes {cpu.beacon:.0f}, PostgreSQL and Redis "
        f"{cpu.database:.0f}, this load generator (with the stand-ins) {cpu.generator:.0f}, "
        f"everything else on the machine {others:.0f}, idle {cpu.capacity - cpu.machine:.0f}"
    )
    if soak.acked:
        print(
            f"  Beacon's CPU per acknowledged delivery (web and workers, all their work): "
            f"{cpu.beacon / soak.acked * 1000:.1f} ms"
        )
    print(
        f"page views: asked {args.viewers:.0f}/s; made {soak.views_asked} "
        f"({soak.views_asked / measured:.0f}/s; {soak.views_not_made} not made: "
        f"{VIEWS_IN_FLIGHT} were unanswered), answered 200: {len(soak.views)}, errors "
        f"{soak.view_errors}; p50 {pct(soak.views, 0.5) * 1000:.0f} ms, p99 "
        f"{pct(soak.views, 0.99) * 1000:.0f} ms"
    )
    print(f"live streams: {soak.streams_open} of {args.streams} still open at the end")
    print(
        f"webhook to page (both processes): {len(soak.to_page)} probes, p50 "
        f"{pct(soak.to_page, 0.5) * 1000:.0f} ms, p99 {pct(soak.to_page, 0.99) * 1000:.0f} ms"
        + (f", mean {statistics.mean(soak.to_page) * 1000:.0f} ms" if soak.to_page else "")
    )
    memory_report(soak)


def memory_report(soak: Soak) -> None:
    samples = soak.memory.samples
    names = list(soak.memory.pids)
    print("memory (RSS MiB) along the run (t: seconds since the load began):")
    print("  " + "t".rjust(5) + "".join(n.rjust(11) for n in names))
    for at, taken in samples:
        row = "".join(
            (f"{taken[n]:.1f}" if not math.isnan(taken.get(n, math.nan)) else "-").rjust(11)
            for n in names
        )
        print(f"  {at:5.0f}{row}")
    end_at = samples[-1][0]
    warm, half, end = (
        soak.memory.at(soak.warm_up),
        soak.memory.at((soak.warm_up + end_at) / 2),
        samples[-1][1],
    )
    first = samples[0][1]
    print(
        f"growth after the warm-up (t={soak.warm_up:.0f} -> {end_at:.0f}) and over the last "
        f"half (t={(soak.warm_up + end_at) / 2:.0f} -> {end_at:.0f}); flat: under 10 % after "
        "the warm-up:"
    )
    for name in names:
        before = first.get(name, math.nan)
        w, h, e = warm.get(name, math.nan), half.get(name, math.nan), end.get(name, math.nan)
        after = growth(w, e)
        verdict = "flat" if after < 10 else "NOT flat" if not math.isnan(after) else "gone"
        started = "-" if math.isnan(before) else f"{before:.0f}"
        print(
            f"  {name}: {started} at the start, {w:.1f} after the warm-up, {h:.1f} at "
            f"half, {e:.1f} at the end: {after:+.1f} % after the warm-up, "
            f"{growth(h, e):+.1f} % over the last half ({verdict})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300, help="measured, after the warm-up")
    # In a 25-minute run the workers' memory rose for 3 to 4 minutes (modules imported on
    # first use, caches filling, the allocators' high water) and then levelled.
    parser.add_argument("--warm-up", type=float, default=300)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--viewers", type=float, default=50)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--sample-every", type=float, default=10)
    parser.add_argument(
        "--changes",
        type=float,
        default=0.1,
        help="share of deliveries that change an alert's state (the rest repeat it)",
    )
    args = parser.parse_args()
    print(f"soak starting; uptime: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="beacon-soak-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            # Inside the try: a start that fails half-way stops what it started.
            cluster.start()
            soak = Soak(cluster, args)
            asyncio.run(soak.run())
            # What was left once the load stopped, a few seconds later.
            time.sleep(5)
            backlog = cluster.sql("SELECT count(*) FROM alert_events WHERE evaluated_at IS NULL")
        finally:
            cluster.close()
    report(soak, args, int(backlog[0][0]))


if __name__ == "__main__":
    main()
