"""Test helpers for the adapters-b tools: fixture deliveries, expectation checks, fuzzing.

Fixture payloads are read as they are from the shared fixtures directory. A `.txt` file that
starts with an HTTP request line is a whole request (headers, blank line, body), as AWS
documents its SNS deliveries; any other file is the body itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

from adapters.alert_sources import AdapterError, Delivery
from engine.models import AlertEvent
from tests.conftest import FIXTURES

ALERT_SOURCES = FIXTURES / "alert_sources"
RECEIVED_AT = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Raises:
    """The expectation that parsing fails with an `AdapterError` whose message holds `text`."""

    text: str


@dataclass(frozen=True)
class Event:
    """A hand-written expectation of one event; `labels` is compared as a whole."""

    status: str
    dedup_key: str
    severity: str
    summary: str
    occurred_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    test: bool = False
    delivery_id: str | None = None
    links: list[str] | None = None


Expectation = Raises | list[Event]


def payload_files(tool_dir: str) -> set[str]:
    """`<tool dir>/<file>` for every payload (not `.meta.md`) of that tool's fixtures."""
    return {
        f"{tool_dir}/{path.name}"
        for path in (ALERT_SOURCES / tool_dir).iterdir()
        if path.suffix in {".json", ".txt"}
    }


def load_delivery(name: str, *, received_at: datetime = RECEIVED_AT) -> Delivery:
    """The fixture `<tool dir>/<file>` as the intake would hand it to an adapter."""
    data = (ALERT_SOURCES / name).read_bytes()
    headers: dict[str, str] = {}
    if data.split(b"\n", 1)[0].rstrip().endswith(b"HTTP/1.1"):
        head, _, data = data.replace(b"\r\n", b"\n").partition(b"\n\n")
        for line in head.decode().splitlines()[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    content_type = headers.get("content-type", "application/json" if name.endswith("json") else "")
    return Delivery(body=data, received_at=received_at, headers=headers, content_type=content_type)


def check(
    parse: Callable[[Delivery, Mapping[str, Any]], list[AlertEvent]],
    delivery: Delivery,
    expected: Expectation,
    settings: Mapping[str, Any] | None = None,
) -> list[AlertEvent]:
    """Parse `delivery` and compare the outcome with the hand-written `expected`."""
    if isinstance(expected, Raises):
        try:
            events = parse(delivery, settings or {})
        except AdapterError as exc:
            assert expected.text in str(exc), str(exc)
            return []
        raise AssertionError(f"expected AdapterError {expected.text!r}, got {events!r}")
    events = parse(delivery, settings or {})
    assert len(events) == len(expected), events
    for event, want in zip(events, expected, strict=True):
        assert event.status == want.status
        assert event.dedup_key == want.dedup_key
        assert event.severity == want.severity
        assert event.summary == want.summary
        assert event.occurred_at == want.occurred_at
        assert event.labels == want.labels
        assert event.test is want.test
        assert event.delivery_id == want.delivery_id
        if want.links is not None:
            assert event.links == want.links
        assert event.received_at == delivery.received_at
        assert event.source == "" and event.id == ""
        orjson.dumps(event.raw)  # raw stays JSON-serialisable
    return events


# --- property-based inputs -------------------------------------------------------------

# Values that have broken parsers before: malformed URLs, placeholders, over-long text,
# extreme times.
NASTY = st.sampled_from(
    [
        "http://[oops/x?triggerid=1",
        "https://[sns.us-east-1.amazonaws.com/x.pem",
        "*UNKNOWN*",
        "{EVENT.ID}",
        "{{ALERT_TYPE}}",
        "[ENDPOINT_NAME]",
        "x" * 3000,
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        2**63 - 1,
        -(2**63),
        1e300,
        "",
    ]
)
json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20) | NASTY
)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> bytes:
    """`document` with a few of its values replaced by random JSON or removed, as bytes."""
    result = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(result)
        path = draw(st.sampled_from(paths))
        replacement = draw(json_values)
        if not path:
            result = replacement
            continue
        parent = result
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
    return orjson.dumps(result)


def fixture_documents(tool_dir: str) -> list[Any]:
    """Every JSON payload of a tool's fixtures (HTTP-request files by their body)."""
    documents = []
    for name in sorted(payload_files(tool_dir)):
        try:
            documents.append(orjson.loads(load_delivery(name).body))
        except orjson.JSONDecodeError:
            continue
    return documents


def bodies(tool_dir: str) -> st.SearchStrategy[bytes]:
    """Random bytes, random JSON, and mutations of the tool's own fixture payloads."""
    documents = fixture_documents(tool_dir)
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(orjson.dumps),
        st.sampled_from(documents).flatmap(mutated),
    )


def only_events_or_adapter_errors(
    parse: Callable[[Delivery, Mapping[str, Any]], list[AlertEvent]],
    delivery: Delivery,
    settings: Mapping[str, Any] | None = None,
) -> None:
    """The fuzzing promise: events, or an `AdapterError` with a message; nothing else."""
    try:
        events = parse(delivery, settings or {})
    except AdapterError as exc:
        assert str(exc).strip()
        return
    assert isinstance(events, list)
    assert all(isinstance(event, AlertEvent) for event in events)


def fixture_path(name: str) -> Path:
    return ALERT_SOURCES / name
