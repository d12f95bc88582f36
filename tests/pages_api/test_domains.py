"""Custom-domain CNAME checks against a real DNS server on loopback (a tiny UDP responder
built on dnspython's message codec: dnspython resolves but does not serve)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import httpx
import pytest

import pages.state
from engine.domains import check_cname
from engine.tables import teams

from . import seed
from .conftest import App

ZONE = {
    "status.acme.test.": "acme.status.example.com.",
    "wrong.acme.test.": "elsewhere.example.net.",
    # The internal name monitoring tools use: it points at Beacon's shared host.
    "beacon.corp.test.": "beacon.example.com.",
}
EXISTS_WITHOUT_CNAME = {"apex.acme.test."}
#: TXT records, name -> value (tests add the tokens pages are given).
TXT: dict[str, str] = {}


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
            elif name in TXT and question.rdtype == dns.rdatatype.TXT:
                response.answer.append(
                    dns.rrset.from_text(name, 300, "IN", "TXT", f'"{TXT[name]}"')
                )
            elif name not in ZONE and name not in EXISTS_WITHOUT_CNAME and name not in TXT:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver

    def __enter__(self) -> DnsServer:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


def unanswered_resolver(lifetime: float) -> dns.resolver.Resolver:
    """A resolver asking a loopback port nothing listens on: every query times out."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unused:
        unused.bind(("127.0.0.1", 0))
        resolver.port = unused.getsockname()[1]
    resolver.lifetime = lifetime
    return resolver


@contextlib.contextmanager
def published(record: dict[str, str]) -> Iterator[None]:
    """The DNS server answers with the page's TXT token `record` while in the block."""
    TXT[record["name"] + "."] = record["value"]
    try:
        yield
    finally:
        TXT.clear()


@contextlib.contextmanager
def pointing(name: str, target: str) -> Iterator[None]:
    """The DNS server answers `name`'s CNAME with `target` while in the block."""
    before = ZONE[name]
    ZONE[name] = target
    try:
        yield
    finally:
        ZONE[name] = before


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


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
    resolver = unanswered_resolver(lifetime=1.0)
    got = check_cname("status.acme.test", "acme.status.example.com", resolver)
    assert not got.ok and got.error is not None


def test_admin_api_reports_the_pages_domain_check(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    app = make_app(BEACON_PAGES_DOMAIN="status.example.com")
    pages.state.of(app.runtime).dns_resolver = dns_server.resolver()
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    got = app.client.get("/api/v1/status-pages/acme/domain", headers=app.key("platform"))
    assert got.status_code == 200
    body = got.json()
    assert {
        k: body[k] for k in ("page", "domain", "expected_target", "ok", "targets", "error")
    } == {
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
    pages.state.of(app.runtime).dns_resolver = dns_server.resolver()
    seed.page(app.store, "acme", custom_domain="status.acme.test")
    with app.store.begin() as conn:
        seed.team(conn, "other")
        # Private, so the other team may not know the page (an open team's: 403).
        conn.execute(teams.update().values(private=True))
    assert app.client.get("/api/v1/status-pages/acme/domain").status_code == 401
    other = app.client.get("/api/v1/status-pages/acme/domain", headers=app.key("other"))
    assert other.status_code == 404
    assert dns_server.queries == []


# --- verification: a custom domain is served only once DNS shows it is the page's --------


def _app(
    make_app: Callable[..., App],
    dns_server: DnsServer | None = None,
    teams: tuple[str, ...] = ("platform",),
    **env: str,
) -> App:
    """An app with `teams`, whose domain checks ask `dns_server` (when given)."""
    if dns_server is not None:
        env["BEACON_DNS_SERVER"] = f"127.0.0.1:{dns_server.port}"
    app = make_app(**env)
    with app.store.begin() as conn:
        for key in teams:
            seed.team(conn, key)
    return app


def _verify(app: App, key: dict[str, str], slug: str = "acme") -> httpx.Response:
    return app.client.post(f"/api/v1/status-pages/{slug}/domain/verify", headers=key)


def _page_with_domain(app: App, domain: str, slug: str = "acme") -> tuple[dict[str, str], int]:
    key = app.key("platform") if slug == "acme" else app.key(slug)
    made = app.client.post(
        "/api/v1/pages",
        json={"slug": slug, "name": slug, "active": True, "custom_domain": domain},
        headers=key,
    )
    assert made.status_code == 201, made.text
    assert made.json()["domain_verified"] is False
    return key, int(made.json()["id"])


def _served_on(app: App, host: str, *, by_host: bool = True) -> bool:
    """Whether Caddy would get a certificate for `host` and (`by_host`) the page answers
    there. Hosts are remembered for 5 s (pages.hosts.DomainCache): a test that checks a
    host before and after verifying it asks only `tls/ask` before."""
    asked = app.client.get(f"/api/v1/tls/ask?domain={host}").status_code == 200
    if not by_host:
        return asked
    # On a host that is not a page's, `/` is Beacon's own root (the public pages, or a
    # redirect to the one there is), never the page itself.
    there = app.client.get("/", headers={"Host": host}, follow_redirects=False)
    own = app.client.get("/", follow_redirects=False)
    served = there.status_code == 200 and there.text != own.text
    assert served == asked, host
    return served


def test_a_custom_domain_is_served_only_after_its_txt_token_is_seen(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    app = _app(make_app, dns_server, BEACON_BASE_URL="https://beacon.example.com")
    key, _ = _page_with_domain(app, "status.acme.test")
    assert not _served_on(app, "status.acme.test", by_host=False)
    status = app.client.get("/api/v1/status-pages/acme/domain", headers=key).json()
    assert status["verified"] is False
    record = status["txt_record"]
    assert record["name"] == "_beacon-challenge.status.acme.test"
    # Its CNAME points at Beacon's shared host: that alone proves nothing.
    refused = _verify(app, key)
    assert refused.status_code == 409
    assert not _served_on(app, "status.acme.test", by_host=False)
    with published(record):
        verified = _verify(app, key)
    assert verified.status_code == 200 and verified.json()["verified"] is True
    assert _served_on(app, "status.acme.test")


def test_a_cname_to_the_pages_own_host_verifies_it(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    app = _app(make_app, dns_server, BEACON_PAGES_DOMAIN="status.example.com")
    key, _ = _page_with_domain(app, "status.acme.test")
    assert _verify(app, key).status_code == 200
    assert _served_on(app, "status.acme.test")


def test_the_internal_name_pointing_at_beacon_cannot_be_claimed(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    app = _app(make_app, dns_server, BEACON_BASE_URL="https://beacon.example.com")
    key, _ = _page_with_domain(app, "beacon.corp.test")
    answer = _verify(app, key)
    assert answer.status_code == 409 and answer.json()["ok"] is True  # the CNAME is there
    assert not _served_on(app, "beacon.corp.test")


def test_beacons_own_names_the_pages_domain_and_taken_domains_are_refused(
    make_app: Callable[..., App],
) -> None:
    app = _app(
        make_app,
        teams=("platform", "other"),
        BEACON_BASE_URL="https://beacon.example.com",
        BEACON_PAGES_DOMAIN="pages.test",
    )
    key = app.key("platform")
    for domain in ("beacon.example.com", "localhost", "pages.test", "acme.pages.test", "10.0.0.1"):
        made = app.client.post(
            "/api/v1/pages", json={"slug": "x", "name": "x", "custom_domain": domain}, headers=key
        )
        assert made.status_code == 422, (domain, made.text)
    _page_with_domain(app, "status.acme.test")
    taken = app.client.post(
        "/api/v1/pages",
        json={"slug": "other", "name": "o", "custom_domain": "status.acme.test"},
        headers=app.key("other"),
    )
    assert taken.status_code == 409


def test_changing_the_domain_needs_a_new_verification(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    app = _app(make_app, dns_server, BEACON_PAGES_DOMAIN="status.example.com")
    key, page_id = _page_with_domain(app, "status.acme.test")
    _verify(app, key)
    assert _served_on(app, "status.acme.test")
    moved = app.client.patch(
        f"/api/v1/pages/{page_id}", json={"custom_domain": "wrong.acme.test"}, headers=key
    )
    assert moved.status_code == 200 and moved.json()["domain_verified"] is False
    assert not _served_on(app, "wrong.acme.test")


# --- links never name an unverified domain; the re-check withdraws a lost one -------------


def _links(app: App, page_id: int, key: dict[str, str]) -> list[str]:
    """Where the page's links point: the admin API's url, the v2 API's page url, the
    subscription flows' page address."""
    from engine import subscribers as subs
    from engine.pagedata import load_page
    from engine.tables import utcnow

    settings = app.runtime.settings
    api_url = app.client.get(f"/api/v1/pages/{page_id}", headers=key).json()["url"]
    with app.store.read() as conn:
        snap = load_page(
            conn, page_id, utcnow(), base_url=settings.base_url, pages_domain=settings.pages_domain
        )
        page = subs.page_by_id(conn, page_id)
    assert page is not None
    return [api_url, snap.page.url, page.url(settings.base_url, settings.pages_domain)]


def test_links_name_a_custom_domain_only_once_it_is_verified(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    app = _app(make_app, dns_server, BEACON_BASE_URL="https://beacon.example.com")
    key, page_id = _page_with_domain(app, "status.acme.test")
    links = _links(app, page_id, key)
    assert all("status.acme.test" not in link for link in links), links
    assert links[1] == "https://beacon.example.com/p/acme"
    record = app.client.get("/api/v1/status-pages/acme/domain", headers=key).json()["txt_record"]
    with published(record):
        assert _verify(app, key).is_success
    assert _links(app, page_id, key)[1:] == ["https://status.acme.test"] * 2


def test_the_recheck_withdraws_a_domain_whose_proof_is_gone_and_keeps_one_dns_cannot_judge(
    make_app: Callable[..., App], dns_server: DnsServer
) -> None:
    import sqlalchemy as sa

    from engine import deadlines, domain_checks, statuspages
    from engine.tables import audit_log

    app = _app(
        make_app, dns_server, ("platform", "globex"), BEACON_PAGES_DOMAIN="status.example.com"
    )
    # acme proves its domain by a CNAME to its own host; globex by its TXT token.
    key, page_id = _page_with_domain(app, "status.acme.test")
    assert _verify(app, key).is_success
    other_key, _ = _page_with_domain(app, "apex.acme.test", slug="globex")
    record = app.client.get("/api/v1/status-pages/globex/domain", headers=other_key).json()
    with published(record["txt_record"]):
        verified = _verify(app, other_key, slug="globex")
        assert verified.is_success
        with app.store.read() as conn:
            due = deadlines.get(conn, statuspages.DOMAIN_RECHECK, statuspages.DOMAIN_RECHECK_KEY)
        assert due is not None  # verifying scheduled the re-check

        # DNS does not answer: nothing can be judged, nothing is withdrawn.
        silent = unanswered_resolver(lifetime=0.5)
        unanswered = domain_checks.recheck(
            app.store, base_url="", pages_domain="status.example.com", resolver=silent
        )
        assert unanswered.withdrawn == [] and unanswered.unanswered == 2

        # acme's CNAME is gone (the name now points elsewhere); globex's TXT is still there.
        with pointing("status.acme.test.", "elsewhere.example.net."):
            done = domain_checks.recheck(
                app.store,
                base_url="",
                pages_domain="status.example.com",
                resolver=dns_server.resolver(),
            )
    assert [(slug, domain) for slug, domain, _ in done.withdrawn] == [("acme", "status.acme.test")]
    assert not _served_on(app, "status.acme.test")
    # Links are back on the page's own host (the base URL's scheme and port).
    assert _links(app, page_id, key)[1:] == ["http://acme.status.example.com:8000"] * 2
    status = app.client.get("/api/v1/status-pages/acme/domain", headers=key).json()
    assert status["verified"] is False
    assert "elsewhere.example.net" in status["withdrawn_because"]
    shown = app.client.get(f"/api/v1/pages/{page_id}", headers=key).json()
    assert shown["domain_verified"] is False
    assert shown["domain_withdrawn_because"] == status["withdrawn_because"]
    with app.store.read() as conn:
        row = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == "withdraw domain")
        ).one()
    assert row.actor == "domain check" and row.object_key == "acme"
    assert row.detail["domain"] == "status.acme.test" and "elsewhere" in row.detail["reason"]
    # Verified again once DNS shows it again; the reason goes.
    assert _verify(app, key).is_success
    again = app.client.get(f"/api/v1/pages/{page_id}", headers=key).json()
    assert again["domain_verified"] and again["domain_withdrawn_because"] is None


def test_apply_refuses_beacons_own_names_as_the_admin_api_does(tmp_path, store) -> None:  # type: ignore[no-untyped-def]
    from config import apply_file
    from engine.errors import ConfigError

    lines = ["teams:\n  - {key: platform}\n", "status_pages:\n"]
    refused = ("beacon.example.com", "localhost", "pages.test", "acme.pages.test", "10.0.0.1")
    for i, domain in enumerate(refused):
        lines.append(f"  - {{slug: p{i}, name: P, teams: [platform], custom_domain: '{domain}'}}\n")
    path = tmp_path / "beacon.yaml"
    path.write_text("".join(lines))
    with pytest.raises(ConfigError) as failed:
        apply_file(store, path, base_url="https://beacon.example.com", pages_domain="pages.test")
    report = str(failed.value)
    # (localhost and an IP address the file's model refuses already: not host names.)
    for i, domain in enumerate(refused):
        assert f"beacon.yaml:{4 + i}:" in report and domain in report, report
    assert "beacon.example.com is one of Beacon's own host names" in report
    assert "acme.pages.test is under the pages domain" in report


def test_domains_verified_before_the_recheck_existed_are_scheduled_at_start(
    make_app: Callable[..., App],
) -> None:
    import sqlalchemy as sa

    from engine import deadlines, domain_checks, statuspages
    from engine.tables import status_pages

    app = _app(make_app, BEACON_PAGES_DOMAIN="status.example.com")
    _page_with_domain(app, "status.acme.test")

    def due() -> object:
        with app.store.begin() as conn:
            domain_checks.ensure_scheduled(conn)
            found = deadlines.get(conn, statuspages.DOMAIN_RECHECK, statuspages.DOMAIN_RECHECK_KEY)
        return found.due_at if found else None

    assert due() is None  # nothing verified: nothing to re-check
    with app.store.begin() as conn:
        # As migration 0010 marked domains set before verification existed.
        conn.execute(status_pages.update().values(domain_verified_at=sa.func.now()))
    first = due()
    assert first is not None and due() == first  # scheduled once, not moved by a restart
