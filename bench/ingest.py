"""Intake throughput: Beacon against a bare Starlette app, same load, same run.

    python bench/ingest.py [--url http://127.0.0.1:8000 --key INTEGRATION_KEY]
                           [--mode embedded|scaled] [--server uvicorn|granian]
                           [--seconds 10] [--connections 50]

Posts distinct Alertmanager deliveries (one alert each, every one a new event) with `wrk`
at 50 connections, first to Beacon (a running server given by --url/--key, or else one it
starts), then to a bare Starlette app on uvicorn that parses the same JSON and answers 202.
Prints events/s and p50/p99 for both, the ratio, the mode and the durability setting, and
checks that every 202 is a committed row (when it started the server itself). For each server
it started it also prints the CPU its processes spent per request (user and system, all
threads, from /proc): on a busy machine the rates move with the neighbours' load, the CPU
per request much less.

`--mode embedded` (the default) starts one `beacon serve` on a SQLite file in a temporary
data directory: intake, evaluation and workers share one process. `--mode scaled` starts a
`beacon serve` and a `beacon worker` on a PostgreSQL database of its own (dropped after)
and Redis under a key prefix of its own (deleted after): the serving process only takes
deliveries. Nothing here asserts a time: it reports.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Each wrk thread numbers its requests; the run's id, the thread id and the number make the
# alert's fingerprint distinct, so no delivery is a retry of another, not even of one a
# previous run sent to the same server (`--url`): Beacon answers a retry without storing or
# evaluating it, and a benchmark of retries would measure the wrong path.
LUA = r"""
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  tid = tid or 0
end
request = function()
  counter = counter + 1
  local id = string.format("RUN-%d-%d", tid, counter)
  local body = string.format(
    '{"receiver":"beacon","status":"firing","alerts":[{"status":"firing",' ..
    '"labels":{"alertname":"Bench","instance":"host-%s","severity":"critical"},' ..
    '"annotations":{"summary":"bench alert %s"},' ..
    '"startsAt":"2026-11-29T10:00:00.%06dZ","endsAt":"0001-01-01T00:00:00Z",' ..
    '"generatorURL":"http://prometheus/graph","fingerprint":"f%s"}],' ..
    '"groupLabels":{"alertname":"Bench"},"commonLabels":{"alertname":"Bench"},' ..
    '"commonAnnotations":{},"externalURL":"http://alertmanager:9093","version":"4",' ..
    '"groupKey":"{}:{alertname=\\"Bench\\"}","truncatedAlerts":0}',
    id, id, counter % 1000000, id)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""

BARE_APP = """
import orjson, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def receive(request):
    document = orjson.loads(await request.body())
    return JSONResponse({"accepted": len(document["alerts"])}, 202)

app = Starlette(routes=[Route("/api/v1/events/{key}", receive, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=PORT, access_log=False, log_level="warning")
"""


@dataclass
class Result:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    total: int
    errors: int
    #: The server's CPU (all its processes) per request, when its process is known.
    cpu_us: float | None = None


def tree_cpu_seconds(root: int) -> float:
    """User and system CPU of `root` and every process below it (all their threads), from
    /proc: what the server spent, whatever else the machine was doing."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields follow the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    # A minute: on a loaded machine `beacon serve` takes tens of seconds to start.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))  # type: ignore[union-attr]
    if text.endswith("us"):
        return value / 1000
    if text.endswith("ms"):
        return value
    if text.endswith("s"):
        return value * 1000
    return value


def run_wrk(
    name: str, url: str, seconds: int, connections: int, script: Path, server: int | None = None
) -> Result:
    cpu_before = tree_cpu_seconds(server) if server else 0.0
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # The latency distribution's own lines ("     50%   12.34ms"), not a Stdev column's "87.50%".
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    cpu_us = (tree_cpu_seconds(server) - cpu_before) / total * 1e6 if server and total else None
    socket_errors = re.search(r"Socket errors:.*", out)
    if socket_errors:
        print(f"  {name}: {socket_errors.group(0)}")
    return Result(name, rps, p50, p99, total, errors, cpu_us)


PG_ADMIN_URL = os.environ.get("BEACON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BEACON_TEST_REDIS", "redis://127.0.0.1:6379/0")


def scaled_env() -> dict[str, str]:
    """A PostgreSQL database and a Redis key prefix of the benchmark's own."""
    import psycopg

    name = f"beacon_bench_{os.urandom(6).hex()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return {
        "BEACON_DATABASE_URL": f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}",
        "BEACON_REDIS_URL": REDIS_URL,
        "BEACON_REDIS_PREFIX": f"beacon-bench-{os.urandom(6).hex()}:",
        "BEACON_SECRET_KEY": os.urandom(24).hex(),
    }


def drop_scaled(env: dict[str, str]) -> None:
    import psycopg
    import redis

    name = env["BEACON_DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"*{env['BEACON_REDIS_PREFIX'].rstrip(':')}*", count=1000):
        client.delete(key)
    client.close()


def _settings(data_dir: Path, extra: dict[str, str]) -> Any:
    from engine.settings import Settings

    return Settings.from_env({"BEACON_DATA_DIR": str(data_dir), **extra})


def start_beacon(
    data_dir: Path, server: str | None = None, extra: dict[str, str] | None = None
) -> tuple[list[subprocess.Popen[bytes]], str, str]:
    """`beacon serve` (and with `extra` naming a database and Redis, a `beacon worker`)
    on a store with one alertmanager source; returns the processes, the URL and its key."""
    from engine import vault
    from engine.db import create_store
    from engine.migrate import upgrade
    from engine.tables import alert_sources, teams

    extra = extra or {}
    store = create_store(_settings(data_dir, extra))
    upgrade(store)
    key = "bench-" + os.urandom(8).hex()
    with store.begin() as conn:
        team = conn.execute(teams.insert().values(key="bench", name="bench")).inserted_primary_key
        assert team is not None
        conn.execute(
            alert_sources.insert().values(
                team_id=team[0],
                key="am",
                name="am",
                type="alertmanager",
                key_digest=vault.of(conn).digest(key),
            )
        )
    store.dispose()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BEACON_DATA_DIR": str(data_dir)}
    for name in ("BEACON_DATABASE_URL", "BEACON_REDIS_URL", "BEACON_CONFIG", "BEACON_REDIS_PREFIX"):
        env.pop(name, None)
    env.update(extra)
    cli = [sys.executable, "-m", "cli"]
    procs = [
        subprocess.Popen(
            # No --server unless asked: the command as a user types it.
            [*cli, "serve", "--port", str(port)] + (["--server", server] if server else []),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    ]
    if extra:
        procs.append(subprocess.Popen([*cli, "worker"], cwd=ROOT, env=env))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", procs[0])
    except BaseException:
        # A server that did not answer in time is stopped, not left running on its own.
        for proc in procs:
            stop(proc)
        raise
    return procs, url, key


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        # The embedded worker threads may wait out their dequeue timeout: do not wait too.
        proc.kill()
        proc.wait(5)


def committed(data_dir: Path, extra: dict[str, str]) -> int:
    import sqlalchemy as sa

    from engine.db import create_store
    from engine.tables import alert_events

    store = create_store(_settings(data_dir, extra))
    with store.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(alert_events)).scalar_one()
    store.dispose()
    return int(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running Beacon (default: start one)")
    parser.add_argument("--key", help="the integration key of an alertmanager source there")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian"],
        help="Beacon's HTTP server (default: none given, i.e. `beacon serve`'s default)",
    )
    parser.add_argument(
        "--mode",
        choices=["embedded", "scaled"],
        default="embedded",
        help="the Beacon it starts: one process on SQLite, or serve + worker on PostgreSQL "
        "and Redis",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    synchronous = (os.environ.get("BEACON_SQLITE_SYNCHRONOUS") or "FULL").upper()

    work = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    script = work / "alertmanager.lua"
    script.write_text(LUA.replace("RUN", os.urandom(4).hex()))
    beacon: list[subprocess.Popen[bytes]] = []
    extra: dict[str, str] = {}
    data_dir = work / "data"
    if args.url:
        if not args.key:
            raise SystemExit("--url needs --key")
        url, key = args.url.rstrip("/"), args.key
        mode = "a running server (mode as it was started)"
    else:
        server = args.server or "default server"
        if args.mode == "scaled":
            extra = scaled_env()
            mode = f"scaled (PostgreSQL, Redis; one beacon serve on {server}, one beacon worker)"
        else:
            mode = f"embedded (SQLite WAL, synchronous={synchronous}, one web process, {server})"
        beacon, url, key = start_beacon(data_dir, args.server, extra)
    try:
        ours = run_wrk(
            "beacon",
            f"{url}/api/v1/events/{key}",
            args.seconds,
            args.connections,
            script,
            beacon[0].pid if beacon else None,
        )
        stored = committed(data_dir, extra) if beacon else None
    finally:
        for proc in beacon:
            stop(proc)
        if extra:
            drop_scaled(extra)

    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP.replace("PORT", str(port))])
    try:
        wait_http(f"http://127.0.0.1:{port}/", bare)
        theirs = run_wrk(
            "bare starlette",
            f"http://127.0.0.1:{port}/api/v1/events/bench",
            args.seconds,
            args.connections,
            script,
            bare.pid,
        )
    finally:
        stop(bare)
    shutil.rmtree(work, ignore_errors=True)

    print(f"mode: {mode}; {args.connections} connections, {args.seconds} s each, one alert each")
    print(
        f"{'':16} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'non-2xx':>8} "
        f"{'CPU us/req':>10}"
    )
    for r in (ours, theirs):
        cpu = f"{r.cpu_us:10.0f}" if r.cpu_us is not None else f"{'':>10}"
        print(
            f"{r.name:16} {r.requests_per_s:10.0f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} "
            f"{r.total:9d} {r.errors:8d} {cpu}"
        )
    print(f"ratio beacon/bare: {ours.requests_per_s / theirs.requests_per_s:.2f}")
    if stored is not None:
        accepted = ours.total - ours.errors
        print(f"committed rows: {stored} (202 answers counted by wrk: {accepted})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
