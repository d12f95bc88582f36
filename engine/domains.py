"""Custom domains: does a page's domain point at Beacon, and may the page have it?

A page's custom domain is served (and gets certificates through `tls/ask`) only once it is
verified: its CNAME points at the page's own host under the pages domain (a target only
that page has), or a TXT record `_beacon-challenge.<domain>` holds the page's token
(`beacon-verify=<token>`). A CNAME to Beacon's shared host proves nothing on its own: any
name someone pointed at Beacon (the internal name monitoring tools use, another customer's
domain) would pass it. Beacon's own host names and the pages domain are never a page's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver


@dataclass(frozen=True)
class CnameCheck:
    """The outcome of one check: `ok` when the domain's CNAME is `expected`; `targets` is
    what DNS answered and `error` says why nothing usable came back."""

    domain: str
    expected: str
    ok: bool
    targets: list[str] = field(default_factory=list)
    error: str | None = None
    #: False when DNS did not answer (a timeout, no server): the check says nothing either
    #: way, and a re-check must not withdraw a domain on it.
    definite: bool = True


def _normal(name: str) -> str:
    return name.strip().lower().rstrip(".")


def check_cname(
    domain: str, expected_target: str, resolver: dns.resolver.Resolver | None = None
) -> CnameCheck:
    """Look up `domain`'s CNAME and compare it with `expected_target` (case and the final
    dot do not matter). Never raises for DNS trouble: the answer says what went wrong."""
    domain, expected = _normal(domain), _normal(expected_target)
    if resolver is None:
        resolver = dns.resolver.Resolver()
        # An admin page waits on this; a slow DNS answer is better reported than waited for.
        resolver.lifetime = 5.0
    try:
        name = dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        return CnameCheck(domain, expected, False, error=f"{domain!r} is not a domain name: {exc}")
    try:
        answer = resolver.resolve(name, dns.rdatatype.CNAME)
    except dns.resolver.NXDOMAIN:
        return CnameCheck(domain, expected, False, error=f"{domain} does not exist in DNS")
    except dns.resolver.NoAnswer:
        return CnameCheck(
            domain, expected, False, error=f"{domain} has no CNAME record (add one to {expected})"
        )
    except dns.resolver.NoNameservers as exc:
        return CnameCheck(
            domain, expected, False, error=f"no DNS server answered: {exc}", definite=False
        )
    except dns.exception.Timeout:
        return CnameCheck(
            domain, expected, False, error=f"DNS lookup of {domain} timed out", definite=False
        )
    except dns.exception.DNSException as exc:
        return CnameCheck(
            domain, expected, False, error=f"DNS lookup of {domain} failed: {exc}", definite=False
        )
    targets = [_normal(rr.target.to_text()) for rr in answer]
    ok = expected in targets
    error = None if ok else f"{domain} points at {', '.join(targets)}, not at {expected}"
    return CnameCheck(domain, expected, ok, targets, error)


TXT_PREFIX = "_beacon-challenge"


def txt_name(domain: str) -> str:
    """Where a page's verification token goes in DNS."""
    return f"{TXT_PREFIX}.{_normal(domain)}"


def txt_value(token: str) -> str:
    return f"beacon-verify={token}"


def check_txt(
    domain: str, token: str, resolver: dns.resolver.Resolver | None = None
) -> tuple[bool, str | None]:
    """Whether `_beacon-challenge.<domain>` has the TXT record `beacon-verify=<token>`; the
    second value says why not. Never raises for DNS trouble."""
    ok, error, _definite = _txt(domain, token, resolver)
    return ok, error


def _txt(
    domain: str, token: str, resolver: dns.resolver.Resolver | None
) -> tuple[bool, str | None, bool]:
    name, wanted = txt_name(domain), txt_value(token)
    if resolver is None:
        resolver = dns.resolver.Resolver()
        resolver.lifetime = 5.0
    try:
        answer = resolver.resolve(dns.name.from_text(name), dns.rdatatype.TXT)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return False, f"{name} has no TXT record (add one: {wanted})", True
    except dns.exception.DNSException as exc:
        return False, f"DNS lookup of {name} failed: {exc}", False
    found = [b"".join(rr.strings).decode(errors="replace") for rr in answer]
    if wanted in found:
        return True, None, True
    return False, f"{name} holds {', '.join(found)}, not {wanted}", True


def expected_target(base_url: str, pages_domain: str, slug: str) -> str:
    """Where a custom domain's CNAME should point: the page's own host under the pages
    domain when there is one, else the host of Beacon's base URL."""
    if pages_domain:
        return f"{slug}.{pages_domain}"
    return (urlsplit(base_url).hostname or "").lower()


@dataclass(frozen=True)
class Proof:
    """Whether DNS shows a custom domain is a page's: a CNAME to the page's own host (only
    with a pages domain: Beacon's shared host proves nothing), or the page's TXT token.
    `definite` is false when DNS did not answer well enough to say it is not."""

    proven: bool
    definite: bool
    reason: str


def prove(
    domain: str,
    token: str | None,
    *,
    base_url: str,
    pages_domain: str,
    slug: str,
    resolver: dns.resolver.Resolver | None = None,
) -> Proof:
    """Ask DNS whether `domain` is still the page's (the re-check of verified domains)."""
    cname = check_cname(domain, expected_target(base_url, pages_domain, slug), resolver)
    if cname.ok and pages_domain:
        return Proof(True, True, "")
    txt_ok, txt_error, txt_definite = (
        _txt(domain, token, resolver)
        if token
        else (
            False,
            "the page has no verification token",
            True,
        )
    )
    if txt_ok:
        return Proof(True, True, "")
    reasons = [cname.error or f"{domain}'s CNAME proves nothing without a pages domain"]
    reasons.append(txt_error or "")
    return Proof(False, cname.definite and txt_definite, "; ".join(r for r in reasons if r))


def beacon_hosts(base_url: str, pages_domain: str) -> frozenset[str]:
    """Hosts that are Beacon itself, never a page: loopback, the base URL's and the pages
    domain (as a Host header carries them: an IPv6 literal in brackets)."""
    names = {"localhost", "127.0.0.1", "[::1]"}
    base = urlsplit(base_url).hostname
    if base:
        names.add(f"[{base.lower()}]" if ":" in base else base.lower())
    if pages_domain:
        names.add(pages_domain)
    return frozenset(names)


def refusal_for(domain: str, base_url: str, pages_domain: str) -> str | None:
    """`refusal` with Beacon's own hosts from its base URL and pages domain: what the admin
    API and `beacon apply` both ask of a custom domain."""
    return refusal(domain, beacon_hosts(base_url, pages_domain), pages_domain)


def refusal(domain: str, own_hosts: frozenset[str], pages_domain: str) -> str | None:
    """Why `domain` can never be a page's custom domain, or None: Beacon's own host names,
    the pages domain and its page hosts, and IP addresses."""
    name = _normal(domain)
    if name in own_hosts:
        return f"{name} is one of Beacon's own host names"
    if pages_domain and (name == pages_domain or name.endswith("." + pages_domain)):
        return f"{name} is under the pages domain {pages_domain}: pages have those already"
    if name.replace(".", "").isdigit() or ":" in name:
        return f"{name} is an IP address, not a domain name"
    return None


def resolver_for(server: str) -> dns.resolver.Resolver:
    """A resolver asking `server` (`host` or `host:port`, BEACON_DNS_SERVER), or the
    system's when it is empty."""
    if not server:
        resolver = dns.resolver.Resolver()
    else:
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        if port:
            resolver.port = int(port)
    resolver.lifetime = 5.0
    return resolver
