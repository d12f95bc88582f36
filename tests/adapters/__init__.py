"""Helpers for the adapter tests: deliveries built from the shared fixtures as they are, and
hand-written expectations checked against what an adapter returns."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery, get_adapter
from engine.models import AlertEvent
from tests.conftest import FIXTURES

ALERT_SOURCES = FIXTURES / "alert_sources"
# Every delivery in these tests arrives at this instant, so "received" times are checkable.
RECEIVED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PAYLOAD_SUFFIXES = (".json", ".txt")

_REQUEST_LINE = re.compile(rb"^(GET|POST|PUT|PATCH) (\S+)(?: HTTP/1\.[01])?$")


@dataclass(frozen=True)
class Ev:
    """One expected event, written by hand from a fixture and its `.meta.md`. `occurred_at`
    is an RFC 3339 instant, or "received" for the delivery's own time."""

    status: str
    dedup_key: str
    severity: str
    summary: str
    labels: Mapping[str, str]
    occurred_at: str
    test: bool = False
    links: list[str] | None = None
    delivery_id: str | None = None


@dataclass(frozen=True)
class Expect:
    """What a fixture must give: events (maybe none) or an AdapterError whose message
    contains `error`. `headers` are the ones the fixture's meta says the tool sends."""

    events: list[Ev] = field(default_factory=list)
    error: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], Delivery] | None = None


def delivery_from_file(
    path: Path, *, headers: Mapping[str, str] | None = None, received_at: datetime = RECEIVED
) -> Delivery:
    """A fixture as the intake would hand it over: a `.txt` holding an HTTP request becomes
    its query, headers, form and body; anything else is the body as it is."""
    data = path.read_bytes()
    given = {k.lower(): v for k, v in (headers or {}).items()}
    lines = [line for line in data.split(b"\n") if not line.startswith(b"#")]
    first = lines[0].rstrip(b"\r") if lines else b""
    if path.suffix == ".txt" and _REQUEST_LINE.match(first):
        return _from_request(b"\n".join(lines), given, received_at)
    return Delivery(
        body=data,
        received_at=received_at,
        headers=given,
        content_type=given.get("content-type", ""),
    )


def _from_request(raw: bytes, extra: Mapping[str, str], received_at: datetime) -> Delivery:
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    request_line, *header_lines = head.split(b"\n")
    match = _REQUEST_LINE.match(request_line)
    assert match, request_line
    headers = {**extra}
    for line in header_lines:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    query = dict(parse_qsl(urlsplit(match.group(2).decode()).query, keep_blank_values=True))
    content_type = headers.get("content-type", "")
    form: dict[str, str] | None = None
    if content_type.startswith("multipart/form-data"):
        # Multipart needs CRLF; the fixture's line endings are normalised above.
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body.replace(b"\n", b"\r\n")
        )
        form = {}
        for part in message.iter_parts():
            field_name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes), payload
            form[str(field_name)] = payload.decode().rstrip("\r\n")
    return Delivery(
        body=body.strip() if form is None else body,
        received_at=received_at,
        headers=headers,
        query=query,
        form=form,
        content_type=content_type,
    )


def parse_fixture(source_type: str, name: str, expect: Expect) -> list[AlertEvent]:
    path = ALERT_SOURCES / name
    if expect.prepare is not None:
        delivery = expect.prepare(path)
    else:
        delivery = delivery_from_file(path, headers=expect.headers)
    return get_adapter(source_type).parse(delivery, {})


def check_fixture(source_type: str, name: str, expect: Expect) -> list[AlertEvent]:
    """Parse fixture `name` with the adapter of `source_type` and compare with `expect`."""
    if expect.error is not None:
        with pytest.raises(AdapterError) as caught:
            parse_fixture(source_type, name, expect)
        assert expect.error in str(caught.value)
        return []
    events = parse_fixture(source_type, name, expect)
    assert len(events) == len(expect.events), [e.dedup_key for e in events]
    for got, want in zip(events, expect.events, strict=True):
        assert got.source_type == source_type
        assert (got.source, got.id) == ("", "")
        assert got.status == want.status, (got.status, want.status)
        assert got.dedup_key == want.dedup_key, (got.dedup_key, want.dedup_key)
        assert got.severity == want.severity, (got.severity, want.severity)
        assert got.summary == want.summary, (got.summary, want.summary)
        assert dict(got.labels) == dict(want.labels), _diff(dict(got.labels), dict(want.labels))
        assert got.test is want.test, (got.test, want.test)
        when = (
            RECEIVED if want.occurred_at == "received" else datetime.fromisoformat(want.occurred_at)
        )
        assert got.occurred_at == when, (got.occurred_at, when)
        assert got.received_at == RECEIVED
        if want.links is not None:
            assert got.links == want.links, (got.links, want.links)
        assert got.delivery_id == want.delivery_id
        orjson.dumps(got.raw)  # raw must stay JSON-serialisable
    return events


def _diff(got: dict[str, str], want: dict[str, str]) -> str:
    extra = {k: v for k, v in got.items() if want.get(k) != v}
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    return f"labels differ: got {extra}, expected {missing}"
