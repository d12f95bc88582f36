"""Every request body is capped before it is read (pages/bodycap.py): a 100 MB body, with
its length declared or sent chunked, is refused with 413 after at most the route's cap, on
the subscription route, the admin API and the intake, and the server's memory stays where
it was."""

from __future__ import annotations

import select
import socket
from pathlib import Path

import pytest

from pages.subscriptions import MAX_BODY
from tests.support import Served, beacon, beacon_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = """
teams: [{key: platform}]
services: [{key: api, name: Public API, team: platform}]
alert_sources:
  - {key: am, name: Alertmanager, type: alertmanager, team: platform,
     integration_key: body-cap-test-key-0001}
status_pages:
  - {slug: acme, name: ACME Status, type: public, teams: [platform], services: [api],
     active: true}
"""

HUNDRED_MB = 100 * 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bodycap")
    (root / "beacon.yaml").write_text(CONFIG)
    applied = beacon(["apply", str(root / "beacon.yaml")], beacon_env(root / "data"))
    assert applied.returncode == 0, applied.stderr
    made = beacon(["apikey", "create", "--admin", "--name", "t"], beacon_env(root / "data"))
    assert made.returncode == 0, made.stderr
    server = Served(root / "data")
    server.key = made.stdout.strip()  # type: ignore[attr-defined]
    server.start()
    yield server
    server.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data


def declared(port: int, path: str, headers: dict[str, str]) -> bytes:
    """Declares 100 MB and sends none of it: the answer must come without the body."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request_head(path, {**headers, "Content-Length": str(HUNDRED_MB)}))
        return answer(sock)


def chunked(port: int, path: str, headers: dict[str, str]) -> tuple[bytes, int]:
    """Sends up to 100 MB chunked, stopping once the server answers (or stops reading);
    returns the answer and how many bytes went out first."""
    frame = b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request_head(path, {**headers, "Transfer-Encoding": "chunked"}))
        sock.settimeout(10)
        while sent < HUNDRED_MB:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except OSError:
                break
            sent += CHUNK
        return answer(sock), sent


@pytest.mark.parametrize(
    "path, content_type, limit",
    [
        ("/p/acme/subscribe", "application/json", MAX_BODY),
        ("/p/acme/subscribe", "application/x-www-form-urlencoded", MAX_BODY),
        ("/api/v1/services", "application/json", 1024 * 1024),
        ("/api/v1/events/body-cap-test-key-0001", "application/json", 1024 * 1024),
    ],
)
def test_a_hundred_megabyte_body_is_refused_before_it_is_read(
    served: Served, path: str, content_type: str, limit: int
):
    assert served.proc is not None
    before = rss_kib(served.proc.pid)
    headers = {"Content-Type": content_type}
    if path.startswith("/api/v1/services"):
        headers["Authorization"] = f"Bearer {served.key}"  # type: ignore[attr-defined]
    head = declared(served.port, path, headers)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    head, sent = chunked(served.port, path, headers)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    # What went out before the answer: the cap, and what the sockets' buffers held.
    assert sent < 16 * 1024 * 1024, sent
    assert rss_kib(served.proc.pid) - before < 32 * 1024


def test_a_body_within_the_cap_is_still_taken(served: Served):
    import httpx

    answer = httpx.post(
        served.url + "/p/acme/subscribe",
        json={"channel": "webhook", "address": "https://example.com/hook"},
    )
    assert answer.status_code != 413, answer.text
