"""Serving and rendering a status page: Beacon against nginx serving the same bytes.

Seeds a page (50 services with 90 days of history, 3 incidents), starts `beacon serve`
(embedded mode) and nginx on the same bytes as static files, and runs wrk at 50 connections
on `/p/{slug}/` and `summary.json` against both. Also measures the render time of the page
(snapshot + every registered document) and the time from a status change to the page
showing it. Prints numbers; asserts nothing (timings are reported, never tested).

    python bench/page.py [--server granian|uvicorn] [--duration 10] [--changes 20]

With `--export`, the same page exported by `beacon serve` (BEACON_EXPORT_DIR) is served,
Beacon then stopped, by each proxy docs/static-export.md documents (Debian's Caddy with its
Caddyfile, nginx with its example) and by a reference nginx (1 worker, a plain static server
on the same files), and Caddy with a bare `file_server` to tell Caddy's own cost from its
configuration's; wrk compares each with the reference on the page and summary.json,
for a client that sends no Accept-Encoding and for one that takes gzip, after checking that
all send the same bytes (issue 18's goal: the proxy at 0.9 of the reference or better).

    python bench/page.py --export [--duration 10] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.wiring import build_runtime  # noqa: E402
from engine import migrate  # noqa: E402
from engine.accounts import create_api_key  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.settings import Settings  # noqa: E402
from pages import documents, render  # noqa: E402
from tests import factories as factory  # noqa: E402
from tests.conftest import free_port  # noqa: E402

SLUG = "acme"
PATHS = {"page": f"/p/{SLUG}/", "summary.json": f"/p/{SLUG}/api/v2/summary.json"}

NGINX_CONF = """
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ text/html html; application/json json; }}
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        index index.html;
        etag on;
    }}
}}
"""


def wrk(url: str, seconds: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) from wrk at 50 connections."""
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  ! {url}: {errors.group(1)} non-2xx answers")
    return rps, p99


def wait_http(url: str, timeout: float = 60) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def render_times(rt: Runtime, page_id: int, rounds: int = 15) -> tuple[list[float], int]:
    """Milliseconds per full render (snapshot + every document), and the page's HTML size."""
    from engine import pagedata

    times = []
    size = 0
    for _ in range(rounds):
        started = time.perf_counter()
        with rt.store.read() as conn:
            snap = pagedata.load_page(conn, page_id, datetime.now(UTC))
        docs = documents.render_all(snap)
        times.append((time.perf_counter() - started) * 1000)
        size = len(docs["index.html"][0])
    return times, size


def change_latency(base: str, key: str, service_ids: list[int], count: int) -> list[float]:
    """Seconds from sending a status change (a manual override over the admin API, which
    commits it with its outbox row and wakes the dispatcher, as the webhook intake does) to
    `GET /p/{slug}/` answering a new ETag; changes spaced past the render interval."""
    statuses = ["major_outage", "operational"]
    latencies = []
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=10) as client:
        for n in range(count):
            etag = client.get(PATHS["page"]).headers["etag"]
            time.sleep(render.RENDER_INTERVAL + 0.1)
            # Each service goes down, then back up: every change is a real change.
            sid = service_ids[(n // 2) % len(service_ids)]
            started = time.perf_counter()
            answer = client.put(
                f"/api/v1/services/{sid}/override", json={"status": statuses[n % 2]}, headers=auth
            )
            if answer.status_code != 200:
                raise SystemExit(f"override: {answer.status_code} {answer.text}")
            give_up = started + 30
            while client.get(PATHS["page"]).headers["etag"] == etag:
                if time.perf_counter() > give_up:
                    raise SystemExit(f"change {n} did not show within 30 s")
                time.sleep(0.002)
            latencies.append(time.perf_counter() - started)
    return latencies


def webhook_latency(work: Path, env: dict[str, str], count: int) -> list[float]:
    """Seconds from POSTing an Uptime Kuma webhook to the example page answering a new ETag,
    on `beacon serve --config examples/beacon.yaml`: intake, rules (a monitor tagged
    `service:auth` marks Sign-in partially down; its recovery ends that), status, render.
    Alternates down and up, spaced past the render interval."""
    import json

    from tests.conftest import FIXTURES

    data = work / "example-data"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)]
        + ["--config", str(ROOT / "examples" / "beacon.yaml")],
        cwd=ROOT,
        env={**env, "BEACON_DATA_DIR": str(data)},
        stdout=subprocess.DEVNULL,
        stderr=open(work / "example-serve.log", "w"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    body = json.loads((FIXTURES / "alert_sources" / "uptime-kuma" / "down_v1_23.json").read_text())
    body["monitor"]["tags"] = [{"name": "service", "value": "auth", "color": "#000"}]
    latencies = []
    try:
        wait_http(base + "/healthz")
        with httpx.Client(base_url=base, timeout=10) as client:
            for n in range(count):
                etag = client.get("/p/northwind/").headers["etag"]
                time.sleep(render.RENDER_INTERVAL + 0.1)
                body["heartbeat"]["status"] = 0 if n % 2 == 0 else 1  # down, then up
                body["heartbeat"]["time"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                started = time.perf_counter()
                answer = client.post("/api/v1/events/example-uptime-kuma-key-change-me", json=body)
                if answer.status_code != 202:
                    raise SystemExit(f"webhook: {answer.status_code} {answer.text}")
                give_up = started + 30
                while client.get("/p/northwind/").headers["etag"] == etag:
                    if time.perf_counter() > give_up:
                        raise SystemExit(f"webhook {n} did not show within 30 s")
                    time.sleep(0.002)
                latencies.append(time.perf_counter() - started)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return latencies


CADDY_GLOBAL = """{{
	admin off
	auto_https off
	storage file_system {{
		root {home}
	}}
}}
"""

#: The reference for the export: nginx, 1 worker, a plain static server on the exported
#: files with what a static server needs to send the same bytes as the documented proxies
#: (`gzip_static` for a client that takes gzip, ETags), nothing else.
NGINX_STATIC_SERVER = """
    types {{ text/html html; application/json json; }}
    server {{
        listen 127.0.0.1:{port};
        root {www};
        index index.html;
        etag on;
        gzip_static on;
    }}
"""

#: Caddy at its leanest sending the same bytes: where the documented Caddyfile's time goes,
#: Caddy's own or its configuration's.
CADDY_BARE = """http://127.0.0.1:{port} {{
	root * {www}
	file_server {{
		precompressed gzip
	}}
}}
"""

#: The http level shared by the reference and the documented nginx example, so that only
#: their `server` blocks differ.
NGINX_MAIN = """
worker_processes 1;
pid {root}/{name}.pid;
error_log {root}/{name}-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
{server}
}}
"""

#: What wrk sends: nothing (wrk's own request has no Accept-Encoding, so every server
#: answers the file as it is), or gzip as a browser does (the `.gz` file beside it).
ENCODINGS = {"identity": (), "gzip": ("Accept-Encoding: gzip",)}
#: Seconds of one wrk run: the servers take turns in slices this long, so that the load of
#: other work on the machine falls on each of them alike.
SLICE = 2


def documented(lang: str) -> str:
    """The one `lang` block of docs/static-export.md."""
    doc = (ROOT / "docs" / "static-export.md").read_text()
    [block] = re.findall(rf"^```{lang}\n(.*?)^```", doc, re.M | re.S)
    return block


def documented_caddyfile(export: Path, beacon_port: int, port: int) -> str:
    """docs/static-export.md's Caddyfile on this run's directory, Beacon and port."""
    site = documented("caddyfile").replace("/var/lib/beacon/export", str(export))
    site = site.replace("127.0.0.1:8000", f"127.0.0.1:{beacon_port}")
    return site.replace("beacon.example.com {", f"http://127.0.0.1:{port} {{", 1)


def documented_nginx(export: Path, beacon_port: int, port: int) -> str:
    """docs/static-export.md's nginx example (its `map` and `server`) on this run's
    directory, Beacon and port."""
    server = documented("nginx").replace("/var/lib/beacon/export", str(export))
    server = server.replace("127.0.0.1:8000", f"127.0.0.1:{beacon_port}")
    return server.replace("listen 80;", f"listen 127.0.0.1:{port};", 1)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time so far of a process and its children (nginx's worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for each in [pid, *map(int, children)]:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def wrk_slice(url: str, seconds: int, headers: tuple[str, ...], pid: int) -> list[float]:
    """[requests per second, requests, p99 ms, CPU seconds of process `pid`] of one wrk run
    at 50 connections."""
    command = ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency"]
    command += [x for h in headers for x in ("-H", h)]
    before = cpu_seconds(pid)
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} non-2xx answers")
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return [rps, requests, p99, used]


def raw(url: str, headers: tuple[str, ...]) -> tuple[bytes, str | None]:
    """The body as sent (not decoded) and its Content-Encoding."""
    with httpx.Client(timeout=10) as client:
        del client.headers["accept-encoding"]  # as wrk: only what `headers` asks for
        with client.stream("GET", url, headers=dict(h.split(": ", 1) for h in headers)) as answer:
            if answer.status_code != 200:
                raise SystemExit(f"{url}: {answer.status_code}")
            return b"".join(answer.iter_raw()), answer.headers.get("content-encoding")


def export_comparison(work: Path, env: dict[str, str], duration: int, runs: int) -> None:
    """The exported page through both documented proxies (Beacon stopped) against the
    reference nginx on the same files, with wrk: the same bytes (checked first) for a
    client that sends no Accept-Encoding and for one that takes gzip."""
    caddy_bin = shutil.which("caddy")
    if not caddy_bin:
        raise SystemExit("caddy is not installed (apt-get install caddy)")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    export = work / "export"
    beacon_port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(beacon_port)],
        cwd=ROOT,
        env={**env, "BEACON_EXPORT_DIR": str(export)},
        stdout=subprocess.DEVNULL,
        stderr=open(work / "serve.log", "w"),  # noqa: SIM115
    )
    try:
        wait_http(f"http://127.0.0.1:{beacon_port}/healthz")
        give_up = time.monotonic() + 60
        while not (export / "p" / SLUG / "badge.svg").exists():
            if time.monotonic() > give_up:
                raise SystemExit("the page was not exported within 60 s")
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(10)
    # Beacon is stopped: whatever answers now is the export.
    (work / "tmp").mkdir(exist_ok=True)
    home = work / "caddy"
    home.mkdir()

    def start(name: str, port: int) -> subprocess.Popen[bytes]:
        if name.startswith("caddy"):
            config = home / f"{name}.Caddyfile"
            if name == "caddy":
                site = documented_caddyfile(export, beacon_port, port)
            else:
                site = CADDY_BARE.format(port=port, www=export)
            config.write_text(CADDY_GLOBAL.format(home=home) + site)
            command = [caddy_bin, "run", "--config", str(config), "--adapter", "caddyfile"]
        else:
            if name == "nginx":
                block = documented_nginx(export, beacon_port, port)
            else:
                block = NGINX_STATIC_SERVER.format(port=port, www=export)
            config = work / f"{name}.conf"
            config.write_text(NGINX_MAIN.format(root=work, name=name, server=block))
            command = [nginx_bin, "-c", str(config), "-g", "daemon off;"]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=open(work / f"{name}.log", "w"),  # noqa: SIM115
        )
        wait_http(f"http://127.0.0.1:{port}{PATHS['page']}")
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    servers = ["reference", "caddy", "nginx", "caddy-bare"]
    ports = {name: free_port() for name in servers}
    cases = [(doc, enc) for doc in PATHS for enc in ENCODINGS]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in servers:
            procs[name] = start(name, ports[name])
        # Like with like: each proxy sends the reference's bytes, encoded as it does.
        for doc, enc in cases:
            sent = {
                name: raw(f"http://127.0.0.1:{ports[name]}{PATHS[doc]}", ENCODINGS[enc])
                for name in servers
            }
            for name in servers:
                if sent[name] != sent["reference"]:
                    raise SystemExit(f"{name} sends other bytes than the reference: {doc} {enc}")
        version = subprocess.run([caddy_bin, "version"], capture_output=True, text=True).stdout
        slices = max(1, duration // SLICE)
        print(
            f"\nexported page, Beacon stopped; wrk -t2 -c50, {slices} slices of {SLICE} s per "
            "server and case, the servers taking turns, after a 2 s warm-up of each; ratio: "
            "the median of each slice's req/s over the reference's in the same turn. "
            "reference: nginx, 1 worker, a plain static server on the same files (etag, "
            f"gzip_static); caddy: Debian's {version.split()[0]} with docs/static-export.md's "
            "Caddyfile (Go on every core); nginx: docs/static-export.md's example, 1 worker; "
            "caddy-bare: the same Caddy with only `root` and `file_server` (precompressed "
            "gzip); cpu: the server's CPU time per request, steadier than req/s on a shared "
            "machine (cpu ratio: the reference's over the server's, the rate one core of each "
            "would serve at)"
        )
        for run in range(1, runs + 1):
            rows = []
            for doc, enc in cases:
                urls = {n: f"http://127.0.0.1:{ports[n]}{PATHS[doc]}" for n in servers}
                for name in servers:
                    wrk_slice(urls[name], 2, ENCODINGS[enc], procs[name].pid)  # warm-up
                turns = [
                    {n: wrk_slice(urls[n], SLICE, ENCODINGS[enc], procs[n].pid) for n in servers}
                    for _ in range(slices)
                ]
                for name in servers:
                    mine = [turn[name] for turn in turns]
                    ratio = statistics.median(
                        turn[name][0] / turn["reference"][0] for turn in turns
                    )
                    requests = sum(m[1] for m in mine)
                    rows.append(
                        (doc, enc, name, requests / (slices * SLICE),
                         max(m[2] for m in mine), sum(m[3] for m in mine) / requests * 1e6, ratio)
                    )  # fmt: skip
            load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            print(f"\nrun {run} of {runs}; {load}")
            print(
                f"{'document':<14}{'encoding':<10}{'server':<11}{'req/s':>8}{'p99 ms':>8}"
                f"{'ratio':>7}{'cpu µs/req':>12}{'cpu ratio':>11}"
            )
            for doc, enc, name, rps, p99, cpu, ratio in rows:
                reference_cpu = next(r[5] for r in rows if r[:3] == (doc, enc, "reference"))
                print(
                    f"{doc:<14}{enc:<10}{name:<11}{rps:>8.0f}{p99:>8.2f}{ratio:>7.2f}"
                    f"{cpu:>12.1f}{reference_cpu / cpu:>11.2f}"
                )
    finally:
        for proc in procs.values():
            stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server", choices=["granian", "uvicorn"], help="default: `beacon serve`'s own"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--changes", type=int, default=20, help="status changes to time")
    parser.add_argument(
        "--export",
        action="store_true",
        help="the exported page: both documented proxies vs a plain nginx on the same files",
    )
    parser.add_argument("--runs", type=int, default=2, help="--export: runs in a row")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is not installed (apt-get install nginx wrk)")

    work = Path(tempfile.mkdtemp(prefix="beacon-bench-page-"))
    work.chmod(0o755)  # nginx's workers (user nobody) read the static copies in it
    data = work / "data"
    settings = Settings.from_env({"BEACON_DATA_DIR": str(data)})
    rt = build_runtime(settings)
    migrate.upgrade(rt.store)
    with rt.store.begin() as conn:
        ids = factory.big_page(conn, datetime.now(UTC), services_count=50, incidents_count=3)
    page_id: int = ids["page"]  # type: ignore[assignment]
    admin_key = create_api_key(rt.store, name="bench", admin=True)

    times, size = render_times(rt, page_id)
    print(f"page: 50 services x 90 days, 3 incidents; HTML {size / 1024:.1f} KB")
    print(
        f"render (snapshot + {len(documents.RENDERERS)} documents): "
        f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms"
    )

    port, nginx_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update(PYTHONPATH=str(ROOT), BEACON_DATA_DIR=str(data))
    if args.export:
        try:
            export_comparison(work, env, args.duration, args.runs)
        finally:
            rt.close()
            shutil.rmtree(work, ignore_errors=True)
        return 0
    server = subprocess.Popen(
        # No --server unless asked: the command as a user types it.
        [sys.executable, "-m", "cli", "serve", "--port", str(port)]
        + (["--server", args.server] if args.server else []),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "serve.log", "w"),  # noqa: SIM115
    )
    nginx: subprocess.Popen[bytes] | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")
        (work / "www").mkdir()
        (work / "tmp").mkdir()
        paths = {}
        for name, path in PATHS.items():
            answer = httpx.get(base + path, timeout=30)
            if answer.status_code != 200:
                print(f"{name}: {answer.status_code} from Beacon; skipped")
                continue
            target = work / "www" / path.lstrip("/")
            if path.endswith("/"):
                target = target / "index.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(answer.content)
            paths[name] = path
        print(
            f"\nwrk -t2 -c50 -d{args.duration}s; Beacon: one web process on "
            f"{args.server or 'the default server'} (embedded mode); nginx: 1 worker, "
            "then one per core"
        )
        print(
            f"{'document':<14}{'beacon req/s':>13}{'p99 ms':>8}"
            f"{'nginx-1 req/s':>15}{'p99 ms':>8}{'ratio':>7}"
            f"{'nginx-auto req/s':>18}{'p99 ms':>8}{'ratio':>7}"
        )
        results = {name: list(wrk(base + path, args.duration)) for name, path in paths.items()}
        for workers in ("1", "auto"):
            conf = work / f"nginx-{workers}.conf"
            conf.write_text(
                NGINX_CONF.format(root=work, www=work / "www", port=nginx_port, workers=workers)
            )
            nginx = subprocess.Popen(
                ["nginx", "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.DEVNULL
            )
            wait_http(f"http://127.0.0.1:{nginx_port}{PATHS['page']}")
            for name, path in paths.items():
                results[name] += wrk(f"http://127.0.0.1:{nginx_port}{path}", args.duration)
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
            nginx = None
        for name, (ours, our_p99, one, one_p99, auto, auto_p99) in results.items():
            print(
                f"{name:<14}{ours:>13.0f}{our_p99:>8.2f}{one:>15.0f}{one_p99:>8.2f}"
                f"{ours / one:>7.2f}{auto:>18.0f}{auto_p99:>8.2f}{ours / auto:>7.2f}"
            )

        if args.changes:
            latencies = change_latency(base, admin_key, ids["services"], args.changes)  # type: ignore[arg-type]
            print(
                f"\nstatus change over HTTP -> page shows it ({len(latencies)} changes): "
                f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
                f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms"
            )
            hooks = webhook_latency(work, env, args.changes)
            print(
                f"webhook -> page shows it (Uptime Kuma, example config, {len(hooks)} "
                f"webhooks): p50 {percentile(hooks, 0.5) * 1000:.0f} ms, "
                f"p99 {percentile(hooks, 0.99) * 1000:.0f} ms, max {max(hooks) * 1000:.0f} ms"
            )
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        rt.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
