"""Test support: real Beacon processes (`beacon serve`, `beacon worker`), a recording HTTP
server, a recording SMTP server, a certificate authority of the test's own, and an HTTPS
stand-in for AWS SNS under it."""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine import migrate
from engine.db import Store, create_store
from engine.settings import Settings

from .conftest import FIXTURES, ROOT, free_port


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
        [sys.executable, "-m", "cli", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[call-overload]
    )


def wait_for(check: Any, seconds: float, what: str, poll: float = 0.2) -> None:
    """Until `check()` is true, every `poll` seconds; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


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


class Served:
    """`beacon serve` on one data directory and a free port, started, killed and started
    again at will (the log is appended to across starts)."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or data_dir.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a" if self._starts else "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--port", str(self.port)] + list(self.args),
                env=beacon_env(self.data_dir, self.env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._starts += 1
        try:
            wait_http(self.url + "/healthz")
        except TimeoutError:
            raise RuntimeError(
                f"beacon serve did not start; log:\n{self.log_path.read_text()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind, as a crash or an OOM kill."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@contextlib.contextmanager
def serve(
    data_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """A running `beacon serve` on a free port; yields its base URL, stops it afterwards."""
    served = Served(data_dir, *args, env=env, port=port, log_path=log_path)
    try:
        served.start()
        yield served.url
    finally:
        served.stop()


@contextlib.contextmanager
def serve_config(
    tmp_path: Path, config: str, rules: str, env: Mapping[str, str]
) -> Iterator[httpx.Client]:
    """`beacon serve --config` on `config` (beacon.yaml) and `rules` (the rules.yaml it
    names), both written to `tmp_path`, its data in `tmp_path / "data"`; yields a client on
    the server's base URL."""
    (tmp_path / "beacon.yaml").write_text(config)
    (tmp_path / "rules.yaml").write_text(rules)
    config_path = str(tmp_path / "beacon.yaml")
    with (
        serve(tmp_path / "data", "--config", config_path, env=env) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        yield client


def deliver_alertmanager(client: httpx.Client, integration_key: str, fixture: str) -> None:
    """Alertmanager's delivery `fixture` (shared/fixtures/alert_sources/alertmanager) posted
    to the source with `integration_key`, which must take it (202)."""
    body = (FIXTURES / "alert_sources" / "alertmanager" / fixture).read_bytes()
    answer = client.post(
        f"/api/v1/events/{integration_key}",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 202, answer.text


@contextlib.contextmanager
def data_store(data_dir: Path, *, upgrade: bool = False) -> Iterator[Store]:
    """The store of a Beacon data directory (a `beacon serve`'s, running or not), opened by
    the test (`upgrade`: and migrated, as for a new one) and disposed of afterwards."""
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data_dir)}))
    try:
        if upgrade:
            migrate.upgrade(store)
        yield store
    finally:
        store.dispose()


@contextlib.contextmanager
def worker(
    data_dir: Path, env: Mapping[str, str], log_path: Path, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A running `beacon worker` (scaled mode: `env` names Redis and the database), with
    `args` (`--queues notify`)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", *args],
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


class _ManyConnections(http.server.ThreadingHTTPServer):
    # The stdlib server's listen backlog is 5: the fan-out's concurrent senders would see
    # connection resets from the stand-in itself. A real provider takes them all.
    request_queue_size = 128


class RecordingServer:
    """A real HTTP server on loopback that records every request and answers with the next
    queued `(status, body, headers)` (default 200 `{}`): the stand-in for SendGrid, Twilio,
    Slack or a subscriber's webhook."""

    def __init__(self) -> None:
        import json

        self.requests: list[dict[str, object]] = []
        self.answers: list[tuple[int, bytes, dict[str, str]]] = []
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
                status, answer, headers = (
                    outer.answers.pop(0) if outer.answers else (200, b"{}", {})
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _ManyConnections(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._json = json

    def answer(
        self, status: int, body: object = None, headers: dict[str, str] | None = None
    ) -> None:
        encoded = self._json.dumps(body if body is not None else {}).encode()
        self.answers.append((status, encoded, dict(headers or {})))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on loopback that accepts every message and records its
    raw content, in order: the stand-in for a mail relay. Use it with `with`; it stops on
    leaving the block."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.received: list[bytes] = []
        received = self.received

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                received.append(envelope.content)
                return "250 OK"

        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._controller.stop()


# --- a certificate authority of the test's own ------------------------------------------------


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(*certs: x509.Certificate) -> bytes:
    """The certificates as one PEM text, in the order given (a chain: leaf first)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _named(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class Issued:
    """A leaf certificate and its private key."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def write_pem(self, path: Path) -> Path:
        """Certificate and key in one file, as `ssl.SSLContext.load_cert_chain` reads it."""
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem(self.cert) + key)
        return path


class LocalCA:
    """A certificate authority made in the test: a self-signed root, or with `parent` an
    intermediate under another `LocalCA`. It issues TLS server certificates, the kind SNS
    signs its messages with and the kind a loopback HTTPS server presents.

    Every certificate it makes is valid for `days` from `valid_from` (default: from a day
    ago, so that a test using the real clock is inside the window)."""

    def __init__(
        self,
        name: str,
        parent: LocalCA | None = None,
        valid_from: datetime | None = None,
        days: int = 30,
    ) -> None:
        if parent is not None:
            valid_from, days = parent.valid_from, parent.days
        self.valid_from: datetime = valid_from or datetime.now(UTC) - timedelta(days=1)
        self.days = days
        self.key = new_key()
        signer = parent.key if parent else self.key
        self.cert = (
            self._builder(_named(name), self.key, parent.cert.subject if parent else _named(name))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False,
            )
            .sign(signer, hashes.SHA256())
        )

    def intermediate(self, name: str) -> LocalCA:
        """An intermediate CA under this one, valid for the same window."""
        return LocalCA(name, parent=self)

    def issue(self, cn: str, san: x509.GeneralName | None = None) -> Issued:
        """A TLS server certificate named `cn`, with `san` (default: `cn` as a DNS name) as
        its subject alternative name."""
        key = new_key()
        cert = (
            self._builder(_named(cn), key, self.cert.subject)
            .add_extension(x509.SubjectAlternativeName([san or x509.DNSName(cn)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert, key)

    def _builder(
        self, subject: x509.Name, key: rsa.RSAPrivateKey, issuer: x509.Name
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.valid_from)
            .not_valid_after(self.valid_from + timedelta(days=self.days))
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )


class FakeSNS:
    """A real HTTPS server on 127.0.0.1 standing in for sns.<region>.amazonaws.com: a GET of
    any path ending in `.pem` answers `signing_pem` (the certificate SNS signs with), any
    other GET is a subscription confirmation. Both are recorded, by path, in the order they
    came. Its TLS certificate, for 127.0.0.1, is issued by `ca`: a client must trust `ca`."""

    def __init__(self, ca: LocalCA, signing_pem: bytes) -> None:
        self.cert_fetches: list[str] = []
        self.confirmed: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                if urlsplit(self.path).path.endswith(".pem"):
                    fake.cert_fetches.append(self.path)
                    body = signing_pem
                else:
                    fake.confirmed.append(self.path)
                    body = b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        tls = ca.issue("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        self._directory = tempfile.TemporaryDirectory()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.write_pem(Path(self._directory.name, "tls.pem")))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.client_context = ssl.create_default_context(cadata=pem(ca.cert).decode())

    def get(self, url: str) -> bytes:
        """What the intake does: a short timeout, and only the URL the adapter allowed."""
        with urllib.request.urlopen(url, timeout=5, context=self.client_context) as answer:
            return bytes(answer.read())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self._directory.cleanup()


def count_chain_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every SNS signing certificate whose chain is verified from now on, in order."""
    from adapters.alert_sources import sns_signature

    checked: list[bytes] = []
    real = sns_signature._trusted_leaf

    def counting(cert_pem: bytes, trust: Any, now: datetime) -> Any:
        checked.append(cert_pem)
        return real(cert_pem, trust, now)

    monkeypatch.setattr(sns_signature, "_trusted_leaf", counting)
    return checked


class RedisServer:
    """A `redis-server` of the test's own on a free port (nothing kept on disk), which the
    test may stop and start again on the same port: a Redis that fails."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_for(lambda: _pings(client), 10, f"redis-server on port {self.port}", poll=0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class SilentServer:
    """A TCP server on loopback that accepts every connection and never answers: a Redis
    (or any peer) that is reachable and hung."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.accepted: list[Any] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read, never written

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
