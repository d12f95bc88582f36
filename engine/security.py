"""Secrets Beacon hands out: API keys (kept hashed), tokens, password hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

API_KEY_PREFIX = "bk_"


def new_api_key() -> tuple[str, str, str]:
    """A new API key: (the key to show once, its listing prefix, its SHA-256 to store)."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[: len(API_KEY_PREFIX) + 6], hash_api_key(key)


def hash_api_key(key: str) -> str:
    return token_digest(key)


def token_digest(token: str) -> str:
    """What the store keeps of a random secret (API key, session, emailed link): its SHA-256.
    A fast hash is right here: the token is 256 random bits, not a guessable password."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


#: argon2id at OWASP's recommended parameters (19 MiB, 2 passes, 1 lane): ~40 ms per check
#: on a quiet core here. RFC 9106's 64 MiB x 3 x 4 profile took 0.75 s on this 2-core
#: machine under load, which a sign-in form must not cost; the memory cost is what makes
#: a stolen table expensive to attack, and 19 MiB per guess already is.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
_PBKDF2 = "pbkdf2_sha256"


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (salted, parameters in the string)."""
    return _HASHER.hash(password)


def check_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored`: an argon2 hash, or a PBKDF2 one from before
    argon2id (`needs_rehash` then says to replace it)."""
    if not stored or not password:
        return False
    if stored.startswith(_PBKDF2 + "$"):
        return _check_pbkdf2(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether a hash that just verified should be replaced by a fresh argon2id one (an old
    PBKDF2 hash, or argon2 with weaker parameters than today's)."""
    if stored.startswith(_PBKDF2 + "$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _check_pbkdf2(password: str, stored: str) -> bool:
    try:
        _, iterations, salt, digest = stored.split("$")
        candidate = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), bytes.fromhex(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(candidate.hex(), digest)
