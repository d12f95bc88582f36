"""Helpers the adapters share: validation with located errors, timestamps, labels, severity
words, template detection, dedup keys and constant-time signature checks."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from engine.models import AlertEvent, Severity, label_value

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
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+02:00 is before year 1 in UTC
            raise AdapterError(f"{field}: timestamp {value!r} is out of range") from None
    raise AdapterError(f"{field}: expected a timestamp, got {type(value).__name__}")


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


ModelT = TypeVar("ModelT", bound=BaseModel)


def error_location(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a JSON path: `("alerts", 0, "status")` -> `alerts[0].status`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def validate(model: type[ModelT], data: Any, *, expected: str, where: str = "") -> ModelT:
    """`data` validated as `model`, or an `AdapterError` naming the first wrong field, what was
    wrong with it and the `expected` tool format."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        location = error_location(first["loc"])
        if where:
            location = where if location == "body" else f"{where}.{location}"
        message = first["msg"]
        if first["type"] == "value_error":
            # An adapter's own validator: its message says it all, got value included.
            message = message.removeprefix("Value error, ")
            shown = ""
        else:
            message = message.lower()
            got = first.get("input")
            shown = "" if isinstance(got, (dict, list)) else f", got {_short(got)}"
        raise AdapterError(f"{location}: {message}{shown} ({expected})") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_go_zero_time(value: datetime) -> bool:
    """Go's zero `time.Time` (`0001-01-01T00:00:00Z`), which Alertmanager and Grafana send as the
    `endsAt` of an alert that is still firing."""
    return value.year <= 1


def label_set_hash(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit hash of a label set (sorted keys, JSON-encoded, SHA-256)."""
    canonical = orjson.dumps(dict(labels), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


def labels_of(values: Mapping[str, Any]) -> dict[str, str]:
    """Labels from the entries of `values` that hold something: None and empty strings are
    left out, since a tool sends them for fields that do not apply. See `label_value`."""
    return {
        name: label_value(value)
        for name, value in values.items()
        if value is not None and value != ""
    }


def text_labels(**values: Any) -> dict[str, str]:
    """`labels_of` for label names that are Python identifiers, given as keyword arguments."""
    return labels_of(values)


def prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, str]:
    """Labels `<prefix><name>` for every non-null entry of `values`. Unlike `labels_of`, an
    empty string is kept: an annotation set to "" is still an annotation the rule can test."""
    # Annotations are strings: the isinstance test spares the Alertmanager path a call each.
    return {
        f"{prefix}{name}": value if isinstance(value, str) else label_value(value)
        for name, value in values.items()
        if value is not None
    }


# The usual spellings of severity in label values and vendor fields, lower-cased. Tools that
# let users pick free-form severities (Alertmanager and Grafana labels) share this table.
SEVERITY_WORDS: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "emerg": Severity.CRITICAL,
    "alert": Severity.CRITICAL,
    "disaster": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "p1": Severity.CRITICAL,
    "sev0": Severity.CRITICAL,
    "sev1": Severity.CRITICAL,
    "high": Severity.HIGH,
    "major": Severity.HIGH,
    "error": Severity.HIGH,
    "err": Severity.HIGH,
    "p2": Severity.HIGH,
    "sev2": Severity.HIGH,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "minor": Severity.WARNING,
    "average": Severity.WARNING,
    "medium": Severity.WARNING,
    "p3": Severity.WARNING,
    "sev3": Severity.WARNING,
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "information": Severity.INFO,
    "notice": Severity.INFO,
    "low": Severity.INFO,
    "debug": Severity.INFO,
    "none": Severity.INFO,
    "ok": Severity.INFO,
    "p4": Severity.INFO,
    "p5": Severity.INFO,
    "sev4": Severity.INFO,
}


def severity_from_word(word: str | None, *, default: Severity = Severity.CRITICAL) -> Severity:
    """The normalised severity for a free-form word (case-insensitive), else `default`."""
    if not word:
        return default
    return SEVERITY_WORDS.get(word.strip().lower(), default)


# A field that is a Datadog or Healthchecks `$VARIABLE` and nothing else; a `$` inside text
# ("costs $USD 5") is not one.
DOLLAR_VARIABLE = re.compile(r"\A\s*\$[A-Z][A-Z0-9_]*\s*\Z")
_STAR_VARIABLE = re.compile(r"^\*[A-Za-z][A-Za-z0-9_]*\*$")


def refuse_dollar_variable(document: Mapping[str, Any], *, template: str, expected: str) -> None:
    """Raise `AdapterError` when a field of `document`, nested ones too, is still a `$VARIABLE`
    (Datadog, Healthchecks): the user posted the `template` itself, not a delivery."""
    found = find_placeholder(document, DOLLAR_VARIABLE)
    if found:
        where, variable = found
        raise AdapterError(
            f"{where}: unrendered template variable {variable!r}: this is the {template}, "
            f"not a delivery ({expected})"
        )


def is_star_placeholder(value: Any) -> bool:
    """True for an UptimeRobot `*variable*` left unreplaced by the tool."""
    return isinstance(value, str) and bool(_STAR_VARIABLE.match(value.strip()))


def find_placeholder(
    document: object, pattern: re.Pattern[str], path: str = ""
) -> tuple[str, str] | None:
    """The dotted path (`body` for a bare string) and the text of the first placeholder
    matching `pattern` in the strings of `document`, searching nested objects and lists; None
    when every string is rendered. A placeholder left means the user posted a template, or
    the tool left one unrendered."""
    if isinstance(document, str):
        match = pattern.search(document)
        return (path or "body", match.group(0)) if match else None
    if isinstance(document, Mapping):
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


def refuse_placeholder(
    value: object,
    pattern: re.Pattern[str],
    where: str,
    *,
    expected: str,
    why: str = "this is the template, not a delivery",
) -> None:
    """Raise `AdapterError` naming the first placeholder matching `pattern` left in `value`
    (at `where`), and `why` that means this is no delivery."""
    found = find_placeholder(value, pattern, where)
    if found:
        path, placeholder = found
        raise AdapterError(f"{path}: unrendered placeholder {placeholder}: {why} ({expected})")


def split_signatures(header_value: str) -> list[str]:
    """The hex values of a `v1=<hex>[,v1=<hex>...]` signature header (PagerDuty style)."""
    values: list[str] = []
    for part in header_value.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme.strip().lower() == "v1" and value.strip():
            values.append(value.strip())
    return values


def hex_digest_matches(expected_hex: str, given: str) -> bool:
    """Constant-time comparison of a hex digest with a header value. Unlike comparing `str`
    values, which raises TypeError for non-ASCII text, any header value gives an answer."""
    return hmac.compare_digest(
        expected_hex.lower().encode(), given.strip().lower().encode("utf-8", "replace")
    )


def require_hex_signature(expected_hex: str, given: str | None, *, header: str) -> None:
    """Raise `SignatureError` unless `given` equals `expected_hex` (constant time, any text)."""
    if not given or not given.strip():
        raise SignatureError(f"missing signature header {header}")
    if not hex_digest_matches(expected_hex, given):
        raise SignatureError(f"signature in {header} does not match")


MAX_DEDUP_KEY = 512  # AlertEvent.dedup_key's limit
MAX_SUMMARY = 2000  # AlertEvent.summary's limit


def bounded_key(key: str) -> str:
    """`key` when it fits a dedup key's 512 characters; else its first 480 characters and a
    hash of the whole, so an over-long vendor value still gives a stable, distinct key."""
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{key[:480]}~{digest}"


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


def make_event(*, expected: str, **fields: Any) -> AlertEvent:
    """An `AlertEvent` from adapter-mapped `fields`, with the dedup key bounded and the summary
    cut to its limit; anything the model still refuses becomes an `AdapterError`. Every
    adapter builds its events here, so bounding, cutting and error reporting are the same for
    all of them."""
    fields["dedup_key"] = bounded_key(str(fields["dedup_key"]))
    fields["summary"] = str(fields.get("summary", ""))[:MAX_SUMMARY]
    try:
        # model_validate takes `fields` as it is; AlertEvent(**fields) would unpack and repack
        # it, a cost the Alertmanager path (thousands of deliveries a second) need not pay.
        return AlertEvent.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = f"cannot build the event: {where}: {error['msg']} ({expected})"
        raise AdapterError(message) from None


_Value = TypeVar("_Value")


def lookup(table: Mapping[str, _Value], value: object, *, field: str, expected: str) -> _Value:
    """`table[value]`, or an `AdapterError` listing the values the tool format allows."""
    try:
        return table[value]  # type: ignore[index]
    except (KeyError, TypeError):
        known = ", ".join(repr(key) for key in table)
        message = f"{field}: expected one of {known}, got {_short(value)} ({expected})"
        raise AdapterError(message) from None
