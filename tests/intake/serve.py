"""A real `beacon serve` on a free port, for end-to-end tests and the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Server:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def beacon_serve(
    data_dir: Path, port: int, *, verbose: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start `beacon serve` (embedded mode, data in `data_dir`) and stop it afterwards; its
    standard output and error go to `data_dir/../serve-<port>.log`."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BEACON_DATA_DIR": str(data_dir),
        **(extra_env or {}),
    }
    for name in ("BEACON_DATABASE_URL", "BEACON_REDIS_URL", "BEACON_CONFIG"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    log_path = data_dir.parent / f"serve-{port}.log"
    args = [sys.executable, "-m", "workers.cli"]
    args += ["-v"] if verbose else []
    args += ["serve", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log_path)
        yield Server(url, data_dir, proc, log_path)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask the server to stop, then make sure: its embedded worker threads may take their
    dequeue timeout to notice a stop request, and tests should not wait for that."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"beacon serve exited: {log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"beacon serve did not answer: {log_path.read_text(errors='replace')}")
