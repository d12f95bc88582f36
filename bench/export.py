"""Webhook to updated page and static export, in embedded mode.

Two measures:

1. What the export costs a render: the render of a 50-service page after a status change
   (snapshot, every document, the page cache, the export), in process, and the export's
   own part of it (the files whose bytes changed, written and fsynced).
2. End to end: `beacon serve --config examples/beacon.yaml` with BEACON_EXPORT_DIR (the
   default command otherwise), an Uptime Kuma webhook (a monitor tagged `service:auth`:
   the example's rules mark Sign-in partially down, its recovery ends that), and the time
   until (a) `GET /p/northwind/` answers a new ETag and (b) the exported `index.html` and
   `api/v2/summary.json` have both been replaced. Webhooks alternate down and up, spaced
   past the render interval.

Prints numbers; asserts nothing. Report the machine's load (`uptime`) with them.

    python bench/export.py [--webhooks 40] [--renders 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.wiring import build_runtime  # noqa: E402
from engine import migrate  # noqa: E402
from engine.overrides import set_override  # noqa: E402
from engine.settings import Settings  # noqa: E402
from pages import render  # noqa: E402
from tests import factories as factory  # noqa: E402
from tests.conftest import FIXTURES, free_port  # noqa: E402

KUMA_KEY = "example-uptime-kuma-key-change-me"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * 1000:.0f} ms, p99 {percentile(values, 0.99) * 1000:.0f}"
        f" ms, max {max(values) * 1000:.0f} ms"
    )


def render_cost(work: Path, rounds: int) -> tuple[list[float], list[float], int]:
    """Seconds per render of a 50-service page after a status change, and of the export
    within it (`pages.export.after_render`), and the files a render wrote (the last one)."""
    from pages import export

    env = {"BEACON_DATA_DIR": str(work / "render"), "BEACON_EXPORT_DIR": str(work / "out")}
    rt = build_runtime(Settings.from_env(env))
    exported: list[float] = []
    original = export.after_render

    def timed(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        original(*args, **kwargs)
        exported.append(time.perf_counter() - started)

    try:
        migrate.upgrade(rt.store)
        with rt.store.begin() as conn:
            ids = factory.big_page(conn, datetime.now(UTC), services_count=50, incidents_count=3)
        page_id: int = ids["page"]  # type: ignore[assignment]
        service_ids: list[int] = ids["services"]  # type: ignore[assignment]
        render.render_page(rt, page_id, 1)  # the first export writes every file
        export.after_render = timed  # type: ignore[assignment]
        times = []
        for n in range(rounds):
            with rt.store.begin() as conn:
                status = "major_outage" if n % 2 == 0 else "operational"
                set_override(
                    conn, service_ids[n % 7], status, until=None, reason=None, actor="bench"
                )
            before = inodes(work / "out/p")
            started = time.perf_counter()
            render.render_page(rt, page_id, n + 2)
            times.append(time.perf_counter() - started)
        after = inodes(work / "out/p")
        files = sum(1 for path, inode in after.items() if before.get(path) != inode)
        return times, exported, files
    finally:
        export.after_render = original  # type: ignore[assignment]
        rt.close()


def inodes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_ino for p in root.rglob("*") if p.is_file()}


def replaced(paths: list[Path], before: list[int]) -> bool:
    """Whether every file was replaced (a rename gives the path a new inode)."""
    for path, inode in zip(paths, before, strict=True):
        try:
            if path.stat().st_ino == inode:
                return False
        except FileNotFoundError:
            return False
    return True


def webhooks(work: Path, count: int) -> tuple[list[float], list[float]]:
    """(seconds to the page's new ETag, seconds to the replaced export files) per webhook."""
    data, export = work / "serve-data", work / "serve-export"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update(PYTHONPATH=str(ROOT), BEACON_DATA_DIR=str(data), BEACON_EXPORT_DIR=str(export))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)]
        + ["--config", str(ROOT / "examples" / "beacon.yaml")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "serve.log", "w"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    body = json.loads((FIXTURES / "alert_sources" / "uptime-kuma" / "down_v1_23.json").read_text())
    body["monitor"]["tags"] = [{"name": "service", "value": "auth", "color": "#000"}]
    files = [export / "p/northwind/index.html", export / "p/northwind/api/v2/summary.json"]
    to_page, to_export = [], []
    try:
        give_up = time.monotonic() + 60
        while not all(f.exists() for f in files):
            if time.monotonic() > give_up or proc.poll() is not None:
                raise SystemExit(f"no export; see {work / 'serve.log'}")
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as client:
            for n in range(count):
                time.sleep(render.RENDER_INTERVAL + 0.1)
                etag = client.get("/p/northwind/").headers["etag"]
                inodes = [f.stat().st_ino for f in files]
                body["heartbeat"]["status"] = 0 if n % 2 == 0 else 1  # down, then up
                body["heartbeat"]["time"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                started = time.perf_counter()
                answer = client.post(f"/api/v1/events/{KUMA_KEY}", json=body)
                if answer.status_code != 202:
                    raise SystemExit(f"webhook: {answer.status_code} {answer.text}")
                page_at = export_at = 0.0
                give_up = time.monotonic() + 30
                while not (page_at and export_at):
                    if time.monotonic() > give_up:
                        raise SystemExit(f"webhook {n} did not show within 30 s")
                    if not page_at and client.get("/p/northwind/").headers["etag"] != etag:
                        page_at = time.perf_counter()
                    if not export_at and replaced(files, inodes):
                        export_at = time.perf_counter()
                    time.sleep(0.002)
                to_page.append(page_at - started)
                to_export.append(export_at - started)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return to_page, to_export


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=40, help="webhooks to time")
    parser.add_argument("--renders", type=int, default=20, help="renders to time, each way")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="beacon-bench-export-"))
    try:
        renders, exports, files = render_cost(work, args.renders)
        print(f"render of a 50-service page after a status change ({args.renders} renders):")
        print(
            f"  whole render: median {statistics.median(renders) * 1000:.1f} ms; of which the "
            f"export: median {statistics.median(exports) * 1000:.1f} ms, "
            f"max {max(exports) * 1000:.1f} ms ({files} files written by the last)"
        )
        page, export = webhooks(work, args.webhooks)
        print(f"\nwebhook -> page and export (embedded mode, {len(page)} webhooks):")
        print(f"  page answers a new ETag:               {ms(page)}")
        print(f"  index.html and summary.json replaced:  {ms(export)}")
        print(
            f"\nload: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
