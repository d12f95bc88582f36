"""Outbound requests cannot be turned inward: refused addresses, DNS rebinding, redirects, a
receiver that drips, an answer too large. Real servers on loopback; the resolver is the
test's own, as a DNS server under an attacker's control would be."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.channels import ChannelError, Context, Message, get_channel, outbound
from tests.conftest import free_port
from tests.support import LocalCA

#: Every kind of address the issue lists, and more of each family.
REFUSED = [
    "127.0.0.1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "224.0.0.1",
    "233.252.0.1",
    "0.0.0.0",
    "240.0.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff0e::1",
    "64:ff9b::a00:1",
    "64:ff9b::808:808",
    "64:ff9b:1::a00:1",
    "2002:a00:1::",
    "2002:808:808::",
    "::ffff:127.0.0.1",
    "::ffff:8.8.8.8",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
]


class Resolver:
    """Answers each lookup with the next of `answers` (the last one repeats), counting them."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Receiver:
    """A loopback HTTP server answering `status` with `headers` and `body`, recording paths."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes = b"{}",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.paths: list[str] = []
        self.hosts: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.paths.append(self.path)
                outer.hosts.append(str(self.headers.get("Host")))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client stopped reading: what the size cap does

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.close()


def _post(url: str, **options: object) -> outbound.Answer:
    return outbound.post(url, content=b"{}", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("address", REFUSED)
def test_it_refuses_a_name_that_resolves_to_a_non_global_address(
    address: str, receiver: Receiver
) -> None:
    resolver = Resolver([address])
    with pytest.raises(ChannelError, match="webhooks only go to public addresses") as caught:
        _post(f"http://hooks.test:{receiver.port}/x", resolver=resolver)
    assert caught.value.permanent
    assert address in str(caught.value)
    assert receiver.paths == []


def test_it_refuses_a_name_with_one_private_address_among_public_ones() -> None:
    resolver = Resolver(["2606:4700::1111", "10.0.0.1"])
    with pytest.raises(ChannelError, match="10.0.0.1, a private address") as caught:
        _post("http://hooks.test/x", resolver=resolver)
    assert caught.value.permanent


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "169.254.169.254", "[64:ff9b::a00:1]"])
def test_a_webhook_to_an_ip_literal_inside_is_refused(host: str) -> None:
    with pytest.raises(ChannelError, match="public addresses") as caught:
        get_channel("webhook").send(
            Message(subject="", text="", payload={"x": 1}), {"url": f"http://{host}:9/"}, Context()
        )
    assert caught.value.permanent


def test_dns_rebinding_gets_no_second_lookup(receiver: Receiver) -> None:
    """Public at the check, loopback at any later lookup: the connection goes to the checked
    address (no route to it from here) and never to the receiver on loopback."""
    resolver = Resolver(["2606:4700::1111"], ["127.0.0.1"])
    with pytest.raises(ChannelError) as caught:
        _post(f"http://rebind.test:{receiver.port}/x", resolver=resolver, deadline=5)
    assert not caught.value.permanent  # unreachable, for now
    assert resolver.calls == ["rebind.test"]
    assert receiver.paths == []


def test_it_connects_to_exactly_the_checked_address_and_keeps_the_name() -> None:
    """Two receivers on one port, at 127.0.0.1 and 127.0.0.2: the resolver's first answer is
    the one connected to, whatever later lookups would say."""
    first = Receiver("127.0.0.1", free_port())
    second = Receiver("127.0.0.2", first.port)
    try:
        resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
        answer = _post(f"http://hooks.test:{first.port}/p", resolver=resolver, allow_private=True)
    finally:
        first.close()
        second.close()
    assert answer.status == 200
    assert first.paths == ["/p"] and second.paths == []
    assert first.hosts == [f"hooks.test:{first.port}"]
    assert resolver.calls == ["hooks.test"]


def test_tls_still_checks_the_name_on_the_pinned_address(tmp_path: Path) -> None:
    ca = LocalCA("Beacon test CA")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(ca.issue("hooks.test").write_pem(tmp_path / "hooks.pem"))
    client_tls = ssl.create_default_context()
    client_tls.load_verify_locations(cadata=ca.cert.public_bytes(Encoding.PEM).decode())
    served = Receiver(tls=server_tls)
    try:
        options = {"resolver": Resolver(["127.0.0.1"]), "allow_private": True, "verify": client_tls}
        assert _post(f"https://hooks.test:{served.port}/tls", **options).status == 200
        with pytest.raises(ChannelError, match="could not reach other.test"):
            _post(f"https://other.test:{served.port}/tls", **options)
    finally:
        served.close()
    assert served.paths == ["/tls"]


def test_a_redirect_is_a_permanent_failure_and_never_followed(receiver: Receiver) -> None:
    inside = Receiver()
    redirecting = Receiver(
        status=307, headers={"Location": f"http://127.0.0.1:{inside.port}/latest/meta-data"}
    )
    try:
        with pytest.raises(ChannelError, match="a redirect to http://127.0.0.1") as caught:
            _post(f"http://127.0.0.1:{redirecting.port}/hook", allow_private=True)
    finally:
        redirecting.close()
        inside.close()
    assert caught.value.permanent
    assert "not followed" in str(caught.value)
    assert redirecting.paths == ["/hook"] and inside.paths == []


@contextlib.contextmanager
def _dripping() -> Iterator[int]:
    """A receiver on loopback that answers one byte a second, forever (its port)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000:
            if stop.is_set():
                break
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            stop.wait(1)
        conn.close()

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def test_a_receiver_that_drips_is_cut_off_at_the_deadline() -> None:
    """One byte a second, forever: every read would succeed, only the total deadline ends it."""
    started = time.monotonic()
    with _dripping() as port:
        with pytest.raises(ChannelError, match="did not answer within the 2 s deadline") as caught:
            _post(f"http://127.0.0.1:{port}/slow", allow_private=True, deadline=2)
    elapsed = time.monotonic() - started
    assert not caught.value.permanent
    assert elapsed < 4, f"cut off after {elapsed:.1f}s"


def test_the_webhook_deadline_is_the_operators_setting(tmp_path: Path) -> None:
    """BEACON_WEBHOOK_TIMEOUT reaches every webhook the workers send (their Context)."""
    from engine.settings import Settings
    from workers.notify import context

    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path),
            "BEACON_WEBHOOK_TIMEOUT": "1.5",
            "BEACON_WEBHOOK_ALLOW_PRIVATE": "true",
        }
    )
    ctx = context(settings)
    assert settings.webhook_timeout == 1.5 and ctx.outbound_deadline == 1.5
    message = Message(subject="s", text="t", id="msg_1")
    with _dripping() as port:
        target = {"url": f"http://127.0.0.1:{port}/slow", "secret": None}
        with pytest.raises(ChannelError, match="within the 1.5 s deadline") as caught:
            get_channel("webhook").send(message, target, ctx)
    assert not caught.value.permanent
    default = Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)})
    assert context(default).outbound_deadline == outbound.DEADLINE == 10


def test_it_reads_at_most_64_kib_of_an_answer() -> None:
    big = Receiver(status=500, body=b"e" * (40 * 1024 * 1024))
    try:
        with pytest.raises(ChannelError, match="answered 500") as caught:
            _post(f"http://127.0.0.1:{big.port}/", allow_private=True)
        answer_ok = Receiver(body=b"o" * (1024 * 1024))
        try:
            answer = _post(f"http://127.0.0.1:{answer_ok.port}/", allow_private=True)
        finally:
            answer_ok.close()
    finally:
        big.close()
    assert not caught.value.permanent
    assert len(answer.body) == outbound.MAX_RESPONSE


def test_the_operator_switch_allows_private_addresses(receiver: Receiver) -> None:
    answer = _post(
        f"http://hooks.test:{receiver.port}/ok",
        resolver=Resolver(["127.0.0.1"]),
        allow_private=True,
    )
    assert answer.status == 200 and receiver.paths == ["/ok"]


def test_it_refuses_urls_that_are_not_http() -> None:
    for url in ("file:///etc/passwd", "gopher://hooks.test/", "http:///nohost"):
        with pytest.raises(ChannelError, match="not an http") as caught:
            _post(url, allow_private=True)
        assert caught.value.permanent


def test_a_url_the_http_client_cannot_parse_fails_for_good_without_its_path() -> None:
    # urlsplit takes these (so a subscription could hold one); httpx or the IDNA codec does
    # not. A retry never helps, and the reason, which managers read, keeps the path hidden.
    for url in ("http://ex\u200bample.com/T0SECRET?token=T0K3N", "http://xn--zz.com/T0SECRET"):
        with pytest.raises(ChannelError, match="not a valid URL") as caught:
            _post(url, allow_private=True, resolver=lambda host, port: ["127.0.0.1"])
        assert caught.value.permanent
        assert "T0SECRET" not in str(caught.value) and "T0K3N" not in str(caught.value)
