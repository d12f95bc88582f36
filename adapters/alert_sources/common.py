"""Small helpers several adapters share: time parsing, constant-time HMAC checks."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from .errors import AdapterError, SignatureError


def parse_time(value: object, *, field: str) -> datetime:
    """An aware UTC datetime from an RFC 3339 string or a Unix time (seconds or milliseconds)."""
    if isinstance(value, bool) or value is None:
        raise AdapterError(f"{field}: expected a timestamp, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise AdapterError(f"{field}: timestamp {value!r} is out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise AdapterError(f"{field}: {value!r} is not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    raise AdapterError(f"{field}: expected a timestamp, got {type(value).__name__}")


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_hex_signature(expected_hex: str, given: str | None, *, header: str) -> None:
    """Raise `SignatureError` unless `given` equals `expected_hex` (constant time)."""
    if not given:
        raise SignatureError(f"missing signature header {header}")
    if not hmac.compare_digest(expected_hex.lower(), given.strip().lower()):
        raise SignatureError(f"signature in {header} does not match")
