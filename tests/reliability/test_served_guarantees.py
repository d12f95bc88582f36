"""The app's middleware guarantees hold through the real server, on the paths `beacon serve`
answers before that middleware (`pages.fastpath.outermost`: webhook deliveries, cached
pages) as on routed ones: the security headers on every answer, and the client's address
taken from `X-Forwarded-For` only when the connection comes from a trusted proxy (what the
sign-in limits, the live streams' caps, refusals and the access log count)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.support import beacon, beacon_env, stop, wait_for, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "served-guarantees-key-0001"
CONFIG = f"""
teams: [{{key: platform}}]
services: [{{key: api, name: Public API, team: platform}}]
alert_sources:
  - {{key: am, name: Alertmanager, type: alertmanager, team: platform,
     integration_key: {KEY}}}
status_pages:
  - {{slug: acme, name: ACME Status, type: public, teams: [platform], services: [api],
     active: true}}
"""
FIRING = {
    "version": "4",
    "status": "firing",
    "alerts": [{"labels": {"alertname": "Down"}, "status": "firing"}],
}


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def mark(self) -> int:
        return len(self.log.read_bytes())

    def logged(self, path: str, since: int) -> list[str]:
        """The clients of the access log's lines for `path` (redacted as logged) after
        `since` (a `mark`)."""
        pattern = re.compile(r"beacon\.access: (\S+) \"\w+ " + re.escape(path) + '"')
        return pattern.findall(self.log.read_bytes()[since:].decode())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`beacon -v serve` (the access log on), behind a proxy said to be on 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    (root / "beacon.yaml").write_text(CONFIG)
    env = beacon_env(
        root / "data",
        {"BEACON_TRUSTED_PROXIES": "127.0.0.1", "BEACON_PAGES_DOMAIN": "status.test"},
    )
    applied = beacon(["apply", str(root / "beacon.yaml")], env)
    assert applied.returncode == 0, applied.stderr
    port = free_port()
    log = root / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "-v", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield Server(f"http://127.0.0.1:{port}", log)
    finally:
        stop(proc)


def raw_answer(url: str, request: bytes) -> httpx.Response:
    """The answer's status and headers to `request`, sent as these bytes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in head[1:]]
    return httpx.Response(int(head[0].split(" ")[1]), headers=headers)


def declared_only(url: str, path: str, length: int) -> httpx.Response:
    """The answer to a POST that declares `length` bytes and sends none of them (a client
    would still be sending them when a refusal closes the connection)."""
    return raw_answer(
        url,
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
        "Content-Type: application/json\r\n\r\n".encode(),
    )


SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "same-origin"}


def test_every_answer_of_the_intake_carries_the_security_headers(served: Server) -> None:
    events = f"{served.url}/api/v1/events/{KEY}"
    with httpx.Client(timeout=30) as client:
        answers = {
            "accepted": client.post(events, json=FIRING),
            "unreadable": client.post(events, json={"alerts": "no"}),
            "unknown key": client.post(f"{served.url}/api/v1/events/no-such-key", json=FIRING),
            "type": client.post(events, content=b"\x00", headers={"content-type": "image/png"}),
            "head": client.head(events),
            "put": client.put(events, json=FIRING),
            "page": client.get(f"{served.url}/p/acme/"),
            "routed": client.get(f"{served.url}/healthz"),
        }
    answers["too large"] = declared_only(served.url, f"/api/v1/events/{KEY}", 100 << 20)
    # HTTP/1.1 without Content-Length or chunked coding: a request without a body (RFC 9112,
    # 6.3), read as an empty one at once, not waited on until the client leaves.
    answers["no body"] = raw_answer(
        served.url, f"POST /api/v1/events/{KEY} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    )
    answers["routed, no body"] = raw_answer(
        served.url, b"POST /p/acme/subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "accepted": 202,
        "unreadable": 400,
        "unknown key": 404,
        "type": 415,
        "head": 204,
        "put": 202,
        "too large": 413,
        "no body": 400,
        "routed, no body": 415,
        "page": 200,
        "routed": 200,
    }
    missing = {
        name: [h for h, v in SECURITY.items() if answer.headers.get(h) != v]
        for name, answer in answers.items()
    }
    assert missing == {name: [] for name in answers}


def test_answers_made_before_the_routes_carry_the_security_headers(served: Server) -> None:
    """The answers the app's outer middleware gives itself: a body over its cap refused
    before it is read, and another path than the page's on a page's host."""
    with httpx.Client(timeout=30) as client:
        answers = {
            "too large": declared_only(served.url, "/api/v1/teams", 100 << 20),
            "too large, page host": raw_answer(
                served.url,
                b"POST /subscribe HTTP/1.1\r\nHost: acme.status.test\r\n"
                b"Content-Length: 104857600\r\n\r\n",
            ),
            "not on a page host": client.get(
                f"{served.url}/api/v1/teams", headers={"host": "acme.status.test"}
            ),
            "page host": client.get(f"{served.url}/", headers={"host": "acme.status.test"}),
        }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "too large": 413,
        "too large, page host": 413,
        "not on a page host": 404,
        "page host": 200,
    }
    missing = {
        name: [h for h, v in SECURITY.items() if answer.headers.get(h) != v]
        for name, answer in answers.items()
    }
    assert missing == {name: [] for name in answers}


def test_forwarded_for_is_believed_only_from_the_trusted_proxy(served: Server) -> None:
    """From 127.0.0.1 (the trusted proxy) the client is the address it forwards, on the
    intake's fast path as on a routed page; from 127.0.0.2 the header is the client's own
    claim and is ignored."""
    since = served.mark()
    hops = [
        ("127.0.0.1", "203.0.113.7"),
        ("127.0.0.2", "198.51.100.9"),
    ]
    for local, forwarded in hops:
        transport = httpx.HTTPTransport(local_address=local)
        with httpx.Client(transport=transport, timeout=30) as client:
            headers = {"x-forwarded-for": forwarded}
            assert (
                client.post(
                    f"{served.url}/api/v1/events/{KEY}", json=FIRING, headers=headers
                ).status_code
                == 202
            )
            assert (
                client.post(
                    f"{served.url}/api/v1/events/unknown-{local}", json=FIRING, headers=headers
                ).status_code
                == 404
            )
            assert client.get(f"{served.url}/healthz", headers=headers).status_code == 200
    # A line is written once its answer has gone: wait for the last of them.
    wait_for(lambda: len(served.logged("/healthz", since)) == 2, 10, "the access log")
    assert served.logged("/api/v1/events/<redacted>", since) == [
        "203.0.113.7",
        "203.0.113.7",
        "127.0.0.2",
        "127.0.0.2",
    ]
    assert served.logged("/healthz", since) == ["203.0.113.7", "127.0.0.2"]
    # And the key itself never reached the log.
    assert KEY not in served.log.read_text()
