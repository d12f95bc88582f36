"""Custom-domain CNAME checks against a real DNS server on loopback (a tiny UDP responder
built on dnspython's message codec: dnspython resolves but does not serve)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from engine.domains import check_cname

from . import seed
from .conftest import App

ZONE = {
    "status.acme.test.": "acme.status.example.com.",
    "wrong.acme.test.": "elsewhere.example.net.",
}
EXISTS_WITHOUT_CNAME = {"apex.acme.test."}


class DnsServer:
    """Answers CNAME queries from `ZONE`; NOERROR/no answer for names that exist without a
    CNAME; NXDOMAIN for the rest."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().lower()
            self.queries.append(name)
            if name in ZONE and question.rdtype == dns.rdatatype.CNAME:
                response.answer.append(dns.rrset.from_text(name, 300, "IN", "CNAME", ZONE[name]))
            elif name not in ZONE and name not in EXISTS_WITHOUT_CNAME:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    server.thread.start()
    yield server
    server.stopped.set()
    server.thread.join()
    server.sock.close()


def test_it_confirms_a_cname_pointing_at_beacon(dns_server: DnsServer) -> None:
    got = check_cname("Status.ACME.test", "acme.status.example.com.", dns_server.resolver())
    assert got.ok and got.error is None
    assert got.targets == ["acme.status.example.com"]
    assert dns_server.queries == ["status.acme.test."]


def test_it_reports_a_cname_pointing_elsewhere(dns_server: DnsServer) -> None:
    got = check_cname("wrong.acme.test", "acme.status.example.com", dns_server.resolver())
    assert not got.ok
    assert got.targets == ["elsewhere.example.net"]
    assert (
        got.error
        == "wrong.acme.test points at elsewhere.example.net, not at acme.status.example.com"
    )


def test_it_reports_a_name_without_cname(dns_server: DnsServer) -> None:
    got = check_cname("apex.acme.test", "acme.status.example.com", dns_server.resolver())
    assert not got.ok and got.error is not None and "no CNAME record" in got.error


def test_it_reports_a_name_that_does_not_exist(dns_server: DnsServer) -> None:
    got = check_cname("missing.acme.test", "acme.status.example.com", dns_server.resolver())
    assert not got.ok and got.error == "missing.acme.test does not exist in DNS"


def test_it_reports_an_unreachable_dns_server_without_raising() -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unused:
        unused.bind(("127.0.0.1", 0))
        resolver.port = unused.getsockname()[1]
    resolver.lifetime = 1.0
    got = check_cname("status.acme.test", "acme.status.example.com", resolver)
    assert not got.ok and got.error is not None


def test_admin_api_reports_the_pages_domain_check(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    app = make_app(BEACON_PAGES_DOMAIN="status.example.com")
    app.runtime.extras["dns_resolver"] = dns_server.resolver()
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    got = app.client.get("/api/v1/status-pages/acme/domain", headers=app.key("platform"))
    assert got.status_code == 200
    assert got.json() == {
        "page": "acme",
        "domain": "status.acme.test",
        "expected_target": "acme.status.example.com",
        "ok": True,
        "targets": ["acme.status.example.com"],
        "error": None,
    }


def test_admin_api_domain_check_needs_a_key_of_the_pages_team(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    app = make_app(BEACON_PAGES_DOMAIN="status.example.com")
    app.runtime.extras["dns_resolver"] = dns_server.resolver()
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    with app.store.begin() as conn:
        seed.team(conn, "other")
    assert app.client.get("/api/v1/status-pages/acme/domain").status_code == 401
    other = app.client.get("/api/v1/status-pages/acme/domain", headers=app.key("other"))
    assert other.status_code == 404
    assert dns_server.queries == []
