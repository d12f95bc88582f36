"""Gatus custom alerts: hand-written fixture expectations, GET and form renderings, templates."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings

from adapters.alert_sources import Delivery
from adapters.alert_sources.gatus import Settings, parse
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

TIMEOUT_ERROR = (
    'Get "https://twin.sh/health": context deadline exceeded '
    "(Client.Timeout exceeded while awaiting headers)"
)

EXPECTATIONS: dict[str, Expectation] = {
    "gatus/readme_slack_example_triggered_rendered.json": [
        Event(
            status="firing",
            dedup_key="endpoint:/website",
            severity="critical",
            summary="website: health check failed",
            # Gatus sends no time of its own.
            occurred_at=RECEIVED_AT,
            labels={
                "endpoint_name": "website",
                "description": "health check failed",
                "errors": TIMEOUT_ERROR,
                "state": "TRIGGERED",
            },
        )
    ],
    "gatus/readme_slack_example_resolved_rendered.json": [
        Event(
            status="resolved",
            dedup_key="endpoint:/website",
            severity="critical",
            summary="website: health check failed",
            occurred_at=RECEIVED_AT,
            labels={
                "endpoint_name": "website",
                "description": "health check failed",
                "state": "RESOLVED",
            },
        )
    ],
    "gatus/readme_slack_example_template.txt": Raises(
        "unrendered placeholder [ALERT_TRIGGERED_OR_RESOLVED]: this is the template"
    ),
    "gatus/recommended_template_for_our_receiver.txt": Raises(
        "unrendered placeholder [ALERT_TRIGGERED_OR_RESOLVED]: this is the template"
    ),
    "gatus/unit_test_expected_bodies.txt": Raises("unrendered placeholder [ENDPOINT_NAME]"),
}


def test_every_gatus_fixture_has_expectations() -> None:
    assert payload_files("gatus") == set(EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_by_hand(name: str) -> None:
    check(parse, load_delivery(name), EXPECTATIONS[name])


def test_triggered_and_resolved_share_the_dedup_key() -> None:
    triggered = parse(load_delivery("gatus/readme_slack_example_triggered_rendered.json"), {})
    resolved = parse(load_delivery("gatus/readme_slack_example_resolved_rendered.json"), {})
    assert triggered[0].dedup_key == resolved[0].dedup_key


RENDERED = {
    "state": "TRIGGERED",
    "endpoint_name": "api",
    "endpoint_group": "core",
    "endpoint_url": "https://api.example.com/health",
    "description": "API down",
    "errors": "status 503",
    "conditions": "❌ - `[STATUS] == 200`",
}


def test_it_reads_the_documented_json_template() -> None:
    event = parse(Delivery(body=orjson.dumps(RENDERED), received_at=RECEIVED_AT), {})[0]
    assert event.dedup_key == "endpoint:core/api"
    assert event.summary == "core/api: API down"
    assert event.links == ["https://api.example.com/health"]
    assert event.labels["conditions"] == "❌ - `[STATUS] == 200`"


def test_brackets_in_free_text_are_not_taken_for_placeholders() -> None:
    body = {**RENDERED, "errors": "body did not contain [ENDPOINT_NAME]"}
    event = parse(Delivery(body=orjson.dumps(body), received_at=RECEIVED_AT), {})[0]
    assert event.details == "body did not contain [ENDPOINT_NAME]"


def test_it_reads_a_get_with_query_fields() -> None:
    # Gatus' default method is GET: the placeholders are rendered into the URL.
    delivery = Delivery(body=b"", received_at=RECEIVED_AT, query={**RENDERED, "state": "RESOLVED"})
    event = parse(delivery, {})[0]
    assert (event.status, event.dedup_key) == ("resolved", "endpoint:core/api")


def test_it_reads_form_fields() -> None:
    delivery = Delivery(body=b"", received_at=RECEIVED_AT, form=RENDERED)
    assert parse(delivery, {})[0].status == "firing"


def test_remapped_states_follow_the_settings() -> None:
    # Gatus' unit test maps TRIGGERED/RESOLVED to boom/fixed through `placeholders`.
    options = {"triggered": ["boom"], "resolved": ["fixed"]}
    boom = Delivery(body=b"", received_at=RECEIVED_AT, query={**RENDERED, "state": "boom"})
    fixed = Delivery(body=b"", received_at=RECEIVED_AT, query={**RENDERED, "state": "fixed"})
    assert parse(boom, options)[0].status == "firing"
    assert parse(fixed, options)[0].status == "resolved"
    check(parse, boom, Raises("state: expected one of 'TRIGGERED', 'RESOLVED', got 'boom'"))


def test_settings_refuse_unknown_keys_and_empty_lists() -> None:
    with pytest.raises(ValueError, match="extra"):
        Settings.model_validate({"placeholders": {}})
    with pytest.raises(ValueError, match="at least 1"):
        Settings.model_validate({"triggered": []})


@pytest.mark.parametrize(
    ("delivery", "message"),
    [
        (Delivery(body=b"", received_at=RECEIVED_AT), "state: missing"),
        (Delivery(body=b'{"text": "all good"}', received_at=RECEIVED_AT), "text: expected"),
        (Delivery(body=b'{"state": "TRIGGERED"}', received_at=RECEIVED_AT), "endpoint_name"),
        (Delivery(body=b'{"description": "a "quoted" word"}', received_at=RECEIVED_AT), "JSON"),
        (Delivery(body=b"\xff\xfe", received_at=RECEIVED_AT), "not UTF-8"),
        (
            Delivery(
                body=b"", received_at=RECEIVED_AT, query={"state": "[ALERT_TRIGGERED_OR_RESOLVED]"}
            ),
            "query.state: unrendered placeholder",
        ),
    ],
)
def test_it_names_what_is_wrong(delivery: Delivery, message: str) -> None:
    check(parse, delivery, Raises(message))


@settings(max_examples=150, deadline=None)
@given(body=bodies("gatus"))
def test_random_bodies_give_events_or_adapter_errors(body: bytes) -> None:
    only_events_or_adapter_errors(parse, Delivery(body=body, received_at=RECEIVED_AT))
