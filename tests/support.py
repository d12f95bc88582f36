"""Running real Beacon processes in tests: `beacon serve` and `beacon worker` subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from .conftest import ROOT, free_port


def beacon_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a Beacon subprocess: this checkout first on the path, its own data
    directory, and no BEACON_* variables leaking in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env["PYTHONPATH"] = str(ROOT)
    env["BEACON_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env


def beacon(
    args: list[str], env: Mapping[str, str], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a `beacon` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[call-overload]
    )


def wait_http(url: str, timeout: float = 60, expect: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2).status_code
            if last == expect:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout}s (last: {last!r})")


@contextlib.contextmanager
def serve(
    data_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """A running `beacon serve` on a free port; yields its base URL, stops it afterwards."""
    port = port or free_port()
    log_path = log_path or data_dir.parent / f"serve-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "serve", "--port", str(port), *args],
            env=beacon_env(data_dir, env),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(base + "/healthz")
        except TimeoutError:
            raise RuntimeError(
                f"beacon serve did not start; log:\n{log_path.read_text()}"
            ) from None
        yield base
    finally:
        stop(proc)


@contextlib.contextmanager
def worker(
    data_dir: Path, env: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A running `beacon worker` (scaled mode: `env` names Redis and the database)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker"],
            env=beacon_env(data_dir, env),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RecordingServer:
    """A real HTTP server on loopback that records every request and answers with the next
    queued `(status, body)` (default 200 `{}`): the stand-in for SendGrid, Twilio, Slack or
    a subscriber's webhook."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        self.requests: list[dict[str, object]] = []
        self.answers: list[tuple[int, bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                outer.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                status, answer = outer.answers.pop(0) if outer.answers else (200, b"{}")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._json = json

    def answer(self, status: int, body: object = None) -> None:
        self.answers.append((status, self._json.dumps(body if body is not None else {}).encode()))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
