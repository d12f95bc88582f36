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


# --- helpers for the adapters-b tools (zabbix, cloudwatch, azure-monitor, newrelic, gatus,
# checkly, betterstack, generic), appended ---

import re  # noqa: E402
from collections.abc import Iterable, Mapping  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

from pydantic import BaseModel, ValidationError  # noqa: E402

from engine.models import AlertEvent  # noqa: E402

_Model = TypeVar("_Model", bound=BaseModel)
_Value = TypeVar("_Value")


def load_model(model: type[_Model], data: object, *, expected: str, where: str = "") -> _Model:
    """`data` validated as `model`, or an `AdapterError` naming the first wrong field (as a
    dotted path under `where`) and the `expected` tool format."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join([where] * bool(where) + [str(part) for part in error["loc"]])
        got = error.get("input")
        shown = "" if isinstance(got, (dict, list)) else f", got {_brief(got)}"
        message = f"{path or 'body'}: {error['msg'].lower()}{shown} ({expected})"
        raise AdapterError(message) from None


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def find_placeholder(document: object, pattern: re.Pattern[str], path: str = "") -> str | None:
    """The dotted path and text of the first string in `document` that still holds a template
    placeholder matching `pattern` (the user posted a template, or the tool left one
    unrendered), else None."""
    if isinstance(document, str):
        match = pattern.search(document)
        return f"{path or 'body'}: unrendered placeholder {match.group(0)}" if match else None
    if isinstance(document, dict):
        items: Iterable[tuple[str, object]] = ((str(k), v) for k, v in document.items())
    elif isinstance(document, list):
        items = ((f"[{i}]", v) for i, v in enumerate(document))
    else:
        return None
    for key, value in items:
        sub = f"{path}{key}" if key.startswith("[") else f"{path}.{key}" if path else key
        found = find_placeholder(value, pattern, sub)
        if found:
            return found
    return None


def joined(values: Iterable[object]) -> str:
    """List-valued vendor fields as one label value: items joined by commas, empties dropped."""
    return ",".join(str(v) for v in values if v is not None and str(v) != "")


def check_timestamp_skew(
    sent_at: datetime, now: datetime, *, max_skew_seconds: float, header: str
) -> None:
    """Raise `SignatureError` when `sent_at` is further than `max_skew_seconds` from `now`
    (a replayed or badly delayed delivery)."""
    if abs((now - sent_at).total_seconds()) > max_skew_seconds:
        raise SignatureError(
            f"{header} is {sent_at.isoformat()}, more than {max_skew_seconds:g}s from now: "
            "stale or replayed delivery"
        )


def bounded_key(key: str, limit: int = 512) -> str:
    """`key` if it fits the event's dedup-key limit, else its head plus a hash of the whole,
    so that long vendor ids stay stable and distinct."""
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: limit - len(digest) - 1]}#{digest}"


def make_event(*, expected: str, **fields: Any) -> AlertEvent:
    """An `AlertEvent` from adapter-mapped `fields`, with the dedup key bounded and the summary
    cut to its limit; anything the model still refuses becomes an `AdapterError`."""
    fields["dedup_key"] = bounded_key(str(fields["dedup_key"]))
    fields["summary"] = str(fields.get("summary", ""))[:2000]
    try:
        return AlertEvent(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = f"cannot build the event: {where}: {error['msg']} ({expected})"
        raise AdapterError(message) from None


def lookup(table: Mapping[str, _Value], value: object, *, field: str, expected: str) -> _Value:
    """`table[value]`, or an `AdapterError` listing the values the tool format allows."""
    try:
        return table[value]  # type: ignore[index]
    except (KeyError, TypeError):
        known = ", ".join(repr(key) for key in table)
        message = f"{field}: expected one of {known}, got {_brief(value)} ({expected})"
        raise AdapterError(message) from None
