"""Subscribers' own links: confirm, manage and unsubscribe.

The token in such a link is its only credential, and Beacon needs it again long after the
subscription: every notification carries the subscriber's manage and unsubscribe links
(and the RFC 8058 `List-Unsubscribe` header), so a random token would have to be kept
readable. Instead the token is made again whenever a message is composed:

    token = selector + HMAC-SHA256(link key, "<purpose>:<page>:<subscriber>:<selector>")

- `selector` (22 characters, 128 random bits) is stored in the row (`link_selector`,
  `confirm_selector`) to find it, as an API key's prefix is: alone it opens nothing.
- the rest (the verifier, 192 bits) is never stored; the link key is derived from
  `BEACON_SECRET_KEY` (engine.vault), so a copy of the database makes no link.
- the page and the subscriber are bound in: a token is checked only against the page in
  its URL, and a row with a reused id or another page's selector does not verify.
- a new selector (a new confirmation round) ends the links made with the old one.

Links made before the secret key changed keep working while that key is listed in
`BEACON_PREVIOUS_SECRET_KEYS` (every key of the ring is tried); messages composed after
the change carry links under the new key.

Links sent by releases that stored random tokens (32 characters) are found by their keyed
digest (`legacy_link_digest`, `legacy_confirm_digest`, made by migration 0022), so
links already in inboxes keep working; those rows get a selector too, and every message
since carries a derived link.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import vault
from .tables import subscribers

#: The manage and unsubscribe links (one token: each page offers the other).
LINK: Literal["link"] = "link"
#: The confirmation link of double opt-in.
CONFIRM: Literal["confirm"] = "confirm"
Purpose = Literal["link", "confirm"]

SELECTOR_CHARS = 22
VERIFIER_CHARS = 32
_DERIVED = re.compile(rf"[A-Za-z0-9_-]{{{SELECTOR_CHARS + VERIFIER_CHARS}}}")
#: What releases before the derived links made (`secrets.token_urlsafe(24)`), with room.
_LEGACY = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_selector() -> str:
    """A row's new selector: 128 random bits."""
    return secrets.token_urlsafe(16)


def _message(purpose: Purpose, page_id: int, subscriber_id: int, selector: str) -> str:
    return f"beacon/subscriber/{purpose}:{page_id}:{subscriber_id}:{selector}"


def make(
    ring: vault.Keyring, purpose: Purpose, page_id: int, subscriber_id: int, selector: str
) -> str:
    """The token of a link, under the current secret key."""
    verifier = ring.derive(_message(purpose, page_id, subscriber_id, selector))
    return selector + verifier[:VERIFIER_CHARS]


def link_token(ring: vault.Keyring, row: Any) -> str:
    """The token of a subscriber row's manage and unsubscribe links."""
    return make(ring, LINK, row.page_id, row.id, row.link_selector)


def confirm_token(ring: vault.Keyring, row: Any) -> str | None:
    """The token of a subscriber row's confirmation link, or None when it has none."""
    if not row.confirm_selector:
        return None
    return make(ring, CONFIRM, row.page_id, row.id, row.confirm_selector)


def find(conn: Connection, page_id: int, purpose: Purpose, token: str) -> Any | None:
    """The subscriber row of `page_id` whose `purpose` link carries `token`, or None: the
    same None for a made-up token, a token of another page and one whose round is over."""
    ring = vault.of(conn)
    if _DERIVED.fullmatch(token):
        row = _derived(conn, ring, page_id, purpose, token)
        if row is not None:
            return row
    # Also for a token shaped as a derived one that did not verify: migration 0022's
    # downgrade writes the derived tokens back as plain ones (the older release honours the
    # links sent under 0022) and the upgrade that follows keeps them as keyed digests, with
    # new selectors; without this they would stop unsubscribing after the round trip.
    if _LEGACY.fullmatch(token):
        column = (
            subscribers.c.legacy_link_digest
            if purpose == LINK
            else subscribers.c.legacy_confirm_digest
        )
        return conn.execute(
            sa.select(subscribers).where(
                subscribers.c.page_id == page_id, column.in_(ring.digests(token))
            )
        ).first()
    return None


def _derived(
    conn: Connection, ring: vault.Keyring, page_id: int, purpose: Purpose, token: str
) -> Any | None:
    selector, verifier = token[:SELECTOR_CHARS], token[SELECTOR_CHARS:]
    column = subscribers.c.link_selector if purpose == LINK else subscribers.c.confirm_selector
    row = conn.execute(
        sa.select(subscribers).where(subscribers.c.page_id == page_id, column == selector)
    ).first()
    if row is None:
        return None
    message = _message(purpose, page_id, row.id, selector)
    expected = [d[:VERIFIER_CHARS] for d in ring.derivations(message)]
    # Every key is compared, in constant time: how many match is all that counts.
    matches = [hmac.compare_digest(verifier, e) for e in expected]
    return row if any(matches) else None
