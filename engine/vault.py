"""Secrets at rest, keyed by `BEACON_SECRET_KEY`.

Two kinds of stored secret:

- Those Beacon only has to recognise (integration keys): the store keeps a keyed digest,
  HMAC-SHA256 under a key derived from the secret key, and finds a row by it. A stolen
  database then gives neither the keys nor a way to test guesses at a weak key chosen in a
  config file (a plain hash would: the key is in a URL a tool posts to, not a password
  with a salt).
- Those Beacon must read back (alert sources' signing secrets, channel URLs and secrets,
  webhook subscriptions' URLs and signing secrets): encrypted with AES-256-GCM under another key
  derived from the secret key (HKDF-SHA256), the column's name bound in as associated
  data, so a value copied into another column does not decrypt. One that must also be
  found by equality (a webhook subscriber's URL: one subscription per URL and page) has a
  keyed lookup digest beside it, under a key of its own.

Both carry the id of the key that made them (`<kid>:` before a digest, `enc1:<kid>:`
before a ciphertext), so the secret key can be rotated: `BEACON_SECRET_KEY` is the key new
values are made with, `BEACON_PREVIOUS_SECRET_KEYS` the keys older values may still be
under (read, never written). `beacon secrets rotate` re-encrypts every value under the
current key; digests move to it when their key is next used or rotated.

The keyring belongs to the database it keyed, so it travels with the store's connections
(`conn.info`, set by `engine.db`): every function that reads or writes a secret finds it
from the connection it already has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import Connection

#: Marks an encrypted value (version 1: AES-256-GCM, 96-bit random nonce).
SEALED = "enc1:"
INFO_KEY = "beacon_keyring"


class VaultError(Exception):
    """A stored secret that no key of the keyring opens (a wrong or dropped secret key)."""


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


@dataclass(frozen=True)
class _Key:
    kid: str
    digest_key: bytes
    aead: AESGCM
    #: Makes the secret half of links Beacon must be able to make again (subscribers' own
    #: links, engine.subscriber_links); a key of its own, so no stored digest is ever one.
    link_key: bytes
    #: Keys the digests that find a stored value Beacon also keeps sealed (a webhook
    #: subscriber's URL, engine.subscribers): apart from the integration keys' digests, so
    #: no chosen integration key can ever be made to match one.
    lookup_key: bytes


def _key(secret: str) -> _Key:
    raw = secret.encode()
    kid = _derive(raw, b"beacon/key-id/v1").hex()[:8]
    return _Key(
        kid,
        _derive(raw, b"beacon/digest/v1"),
        AESGCM(_derive(raw, b"beacon/encrypt/v1")),
        _derive(raw, b"beacon/subscriber-links/v1"),
        _derive(raw, b"beacon/lookup/v1"),
    )


class Keyring:
    """The current secret key and the previous ones still accepted, current first."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets or not secrets[0]:
            raise ValueError("a keyring needs the secret key")
        self._keys = [_key(s) for s in dict.fromkeys(s for s in secrets if s)]
        self._by_id = {k.kid: k for k in self._keys}

    @property
    def current_id(self) -> str:
        return self._keys[0].kid

    # --- digests: secrets Beacon only recognises ---------------------------------------------

    def digest(self, token: str) -> str:
        """What the store keeps of `token`: `<kid>:<HMAC-SHA256 hex>` under the current key."""
        return self._digest(self._keys[0], token)

    def digests(self, token: str) -> list[str]:
        """`token`'s digest under every key of the ring: a row stored under any of them is
        found with `IN (...)`."""
        return [self._digest(k, token) for k in self._keys]

    def is_current(self, stored: str) -> bool:
        return stored.startswith(self._keys[0].kid + ":")

    @staticmethod
    def _digest(key: _Key, token: str) -> str:
        mac = hmac.new(key.digest_key, token.encode(), hashlib.sha256).hexdigest()
        return f"{key.kid}:{mac}"

    # --- lookups: equal values found again, the value itself sealed elsewhere ----------------

    def lookup(self, value: str) -> str:
        """`<kid>:<HMAC-SHA256 hex>` of `value` under the current key's lookup key: a stored
        value equal to another is found by it (and a unique index holds it), while the
        value itself is sealed. Without the secret key it tells nothing about the value."""
        return self._lookup(self._keys[0], value)

    def lookups(self, value: str) -> list[str]:
        """`value`'s lookup digest under every key of the ring, current first."""
        return [self._lookup(k, value) for k in self._keys]

    @staticmethod
    def _lookup(key: _Key, value: str) -> str:
        mac = hmac.new(key.lookup_key, value.encode(), hashlib.sha256).hexdigest()
        return f"{key.kid}:{mac}"

    # --- derived tokens: secrets Beacon makes again whenever it needs them -------------------

    def derive(self, message: str) -> str:
        """The token for `message` under the current key: HMAC-SHA256 in unpadded url-safe
        base64 (43 characters). The same message always gives the same token, so it need not
        be stored: whoever has the secret key makes it again."""
        return self._derived(self._keys[0], message)

    def derivations(self, message: str) -> list[str]:
        """`message`'s token under every key of the ring, current first: a link made before
        the secret key changed still checks while its key is a previous one."""
        return [self._derived(k, message) for k in self._keys]

    @staticmethod
    def _derived(key: _Key, message: str) -> str:
        mac = hmac.new(key.link_key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    # --- encryption: secrets Beacon reads back --------------------------------------------------

    def seal(self, value: str, column: str) -> str:
        """`value` encrypted under the current key for `column` (e.g. `channels.config.url`)."""
        key = self._keys[0]
        nonce = os.urandom(12)
        box = key.aead.encrypt(nonce, value.encode(), column.encode())
        return f"{SEALED}{key.kid}:" + base64.urlsafe_b64encode(nonce + box).decode().rstrip("=")

    def reveal(self, stored: str, column: str) -> str:
        """The plaintext of a sealed value. A value without the `enc1:` mark is returned as
        it is: one written before secrets were encrypted, which the migration has not
        reached (it converts every row; this only keeps an unconverted one working)."""
        if not stored.startswith(SEALED):
            return stored
        kid, _, body = stored[len(SEALED) :].partition(":")
        key = self._by_id.get(kid)
        if key is None:
            raise VaultError(
                f"{column}: sealed under key {kid}, which is neither BEACON_SECRET_KEY nor in "
                "BEACON_PREVIOUS_SECRET_KEYS"
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return key.aead.decrypt(raw[:12], raw[12:], column.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise VaultError(f"{column}: a sealed value does not open ({exc!r})") from None

    def is_sealed_current(self, stored: str) -> bool:
        return stored.startswith(f"{SEALED}{self._keys[0].kid}:")

    def seal_fields(
        self, values: Mapping[str, Any], fields: Iterable[str], column: str
    ) -> dict[str, Any]:
        """`values` with the string `fields` sealed (for `column.<field>`)."""
        out = dict(values)
        for name in fields:
            if isinstance(out.get(name), str):
                out[name] = self.seal(out[name], f"{column}.{name}")
        return out

    def reveal_fields(
        self, values: Mapping[str, Any], fields: Iterable[str], column: str
    ) -> dict[str, Any]:
        """`values` with the sealed `fields` opened."""
        out = dict(values)
        for name in fields:
            if isinstance(out.get(name), str):
                out[name] = self.reveal(out[name], f"{column}.{name}")
        return out


def keyring_from(secret_key: str, previous: Sequence[str] = ()) -> Keyring:
    return Keyring([secret_key, *previous])


def of(conn: Connection) -> Keyring:
    """The keyring of the store `conn` belongs to."""
    found = conn.info.get(INFO_KEY)
    if found is None:
        raise RuntimeError(
            "this connection has no keyring: open the store with engine.db.create_store"
        )
    assert isinstance(found, Keyring)
    return found
