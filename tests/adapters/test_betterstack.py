"""Better Stack Uptime incident webhooks: hand-written fixture expectations, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings

from adapters.alert_sources import Delivery
from adapters.alert_sources.betterstack import parse
from tests.adapters.fixtures_b import (
    RECEIVED_AT,
    Event,
    Expectation,
    Raises,
    bodies,
    check,
    load_delivery,
    only_events_or_adapter_errors,
    payload_files,
)

NAME = "betterstack/incident_webhook_shape_RECONSTRUCTED.json"
LABELS = {
    "monitor_id": "2345678",
    "monitor_name": "example.com",
    "monitor_url": "https://example.com",
    "http_method": "get",
    "cause": "Status 500",
    "team_name": "My team",
    "regions": "us,eu",
    "incident_status": "Started",
}

EXPECTATIONS: dict[str, Expectation] = {
    NAME: [
        Event(
            status="firing",
            dedup_key="incident:123456789",
            severity="critical",
            summary="example.com: Status 500",
            occurred_at=datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
            labels=LABELS,
            links=["https://example.com"],
        )
    ],
}


def test_every_betterstack_fixture_has_expectations() -> None:
    assert payload_files("betterstack") == set(EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_by_hand(name: str) -> None:
    check(parse, load_delivery(name), EXPECTATIONS[name])


def _with_attributes(**changes: object) -> Delivery:
    document = orjson.loads(load_delivery(NAME).body)
    document["data"]["attributes"].update(changes)
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT)


def test_resolved_incident_ends_at_resolved_at_with_the_same_dedup_key() -> None:
    started = parse(load_delivery(NAME), {})[0]
    resolved = parse(
        _with_attributes(status="Resolved", resolved_at="2024-01-15T10:42:00.000Z"), {}
    )[0]
    assert resolved.status == "resolved"
    assert resolved.occurred_at == datetime(2024, 1, 15, 10, 42, tzinfo=UTC)
    assert resolved.dedup_key == started.dedup_key


def test_acknowledged_incident_is_still_firing() -> None:
    assert parse(_with_attributes(status="Acknowledged"), {})[0].status == "firing"


@pytest.mark.parametrize("status", ["Unconfirmed", "Validating"])
def test_unconfirmed_incidents_give_no_event(status: str) -> None:
    assert parse(_with_attributes(status=status), {}) == []


@pytest.mark.parametrize(
    ("delivery", "message"),
    [
        (_with_attributes(status="Exploded"), "data.attributes.status: expected one of"),
        (_with_attributes(started_at="yesterday"), "data.attributes.started_at"),
        (Delivery(body=b'{"data": {"id": 1}}', received_at=RECEIVED_AT), "data.attributes"),
    ],
)
def test_it_names_the_wrong_field(delivery: Delivery, message: str) -> None:
    check(parse, delivery, Raises(message))


@settings(max_examples=150, deadline=None)
@given(body=bodies("betterstack"))
def test_random_bodies_give_events_or_adapter_errors(body: bytes) -> None:
    only_events_or_adapter_errors(parse, Delivery(body=body, received_at=RECEIVED_AT))
