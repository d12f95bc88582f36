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
        return CnameCheck(domain, expected, False, error=f"no DNS server answered: {exc}")
    except dns.exception.Timeout:
        return CnameCheck(domain, expected, False, error=f"DNS lookup of {domain} timed out")
    except dns.exception.DNSException as exc:
        return CnameCheck(domain, expected, False, error=f"DNS lookup of {domain} failed: {exc}")
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
    name, wanted = txt_name(domain), txt_value(token)
    if resolver is None:
        resolver = dns.resolver.Resolver()
        resolver.lifetime = 5.0
    try:
        answer = resolver.resolve(dns.name.from_text(name), dns.rdatatype.TXT)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return False, f"{name} has no TXT record (add one: {wanted})"
    except dns.exception.DNSException as exc:
        return False, f"DNS lookup of {name} failed: {exc}"
    found = [b"".join(rr.strings).decode(errors="replace") for rr in answer]
    if wanted in found:
        return True, None
    return False, f"{name} holds {', '.join(found)}, not {wanted}"


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
