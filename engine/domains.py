"""Custom domains: does a page's domain point at Beacon?

An operator adds `CNAME status.acme.test -> <Beacon's host>` at their DNS provider; the
admin API shows whether that is in place yet, so "why does my domain not work?" has an
answer before anyone looks at certificates. Only the CNAME is checked: an A record cannot
say it means Beacon.
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
