"""The re-check of verified custom domains: a domain stays served only while DNS still
shows it is the page's.

A domain verified once may change hands later (its CNAME removed, the name sold): Beacon
would go on serving the page there and asking Caddy for certificates. So every
`statuspages.DOMAIN_RECHECK_EVERY` each verified domain is asked again (`domains.prove`),
and one whose proof DNS definitely no longer shows is withdrawn (`statuspages.
withdraw_domain`: unverified, the reason kept, an audit row, links back on the page's own
address). A DNS failure (timeout, no server) withdraws nothing: it says nothing either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import deadlines, domains, statuspages
from .db import Store
from .tables import status_pages, utcnow

log = logging.getLogger(__name__)
ACTOR = "domain check"


@dataclass(frozen=True)
class Rechecked:
    """How many verified domains were asked, which were withdrawn (slug, domain, reason),
    and how many DNS could not answer for."""

    checked: int
    withdrawn: list[tuple[str, str, str]]
    unanswered: int


def ensure_scheduled(conn: Connection) -> None:
    """Schedule the re-check unless one is pending or no domain is verified: at every start
    (`beacon serve`), so domains verified by an older release, or before a lost deadline,
    are re-checked too."""
    if deadlines.get(conn, statuspages.DOMAIN_RECHECK, statuspages.DOMAIN_RECHECK_KEY):
        return
    verified = conn.execute(
        sa.select(status_pages.c.id).where(status_pages.c.domain_verified_at.is_not(None)).limit(1)
    ).first()
    if verified is not None:
        deadlines.schedule(
            conn,
            statuspages.DOMAIN_RECHECK,
            statuspages.DOMAIN_RECHECK_KEY,
            utcnow() + statuspages.DOMAIN_RECHECK_EVERY,
        )


def recheck(store: Store, *, base_url: str, pages_domain: str, resolver: Any = None) -> Rechecked:
    """Ask DNS again about every verified custom domain and withdraw those it no longer
    proves; then schedule the next re-check while any verified domain remains."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(
                status_pages.c.id,
                status_pages.c.slug,
                status_pages.c.custom_domain,
                status_pages.c.domain_token,
            ).where(
                status_pages.c.custom_domain.is_not(None),
                status_pages.c.domain_verified_at.is_not(None),
            )
        ).all()
    withdrawn: list[tuple[str, str, str]] = []
    unanswered = 0
    for row in rows:
        proof = domains.prove(
            row.custom_domain,
            row.domain_token,
            base_url=base_url,
            pages_domain=pages_domain,
            slug=row.slug,
            resolver=resolver,
        )
        if proof.proven:
            continue
        if not proof.definite:
            unanswered += 1
            log.warning(
                "domain %s of page %s: no answer from DNS (%s)",
                row.custom_domain,
                row.slug,
                proof.reason,
            )
            continue
        reason = f"DNS no longer shows {row.custom_domain} is this page's: {proof.reason}"
        with store.begin() as conn:
            if statuspages.withdraw_domain(conn, row.id, row.custom_domain, reason, actor=ACTOR):
                withdrawn.append((row.slug, row.custom_domain, reason))
                log.warning(
                    "withdrew domain %s of page %s: %s", row.custom_domain, row.slug, reason
                )
    with store.begin() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).where(status_pages.c.domain_verified_at.is_not(None))
        ).scalar_one()
        if left:
            deadlines.schedule(
                conn,
                statuspages.DOMAIN_RECHECK,
                statuspages.DOMAIN_RECHECK_KEY,
                utcnow() + statuspages.DOMAIN_RECHECK_EVERY,
            )
    return Rechecked(len(rows), withdrawn, unanswered)
