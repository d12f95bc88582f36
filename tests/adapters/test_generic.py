"""The generic JMESPath adapter: DESIGN.md's example mapping, type errors, real payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.alert_sources import Delivery
from adapters.alert_sources.generic import Settings, parse
from tests.adapters.fixtures_b import (
    RECEIVED_AT,
    Event,
    Raises,
    check,
    json_values,
    load_delivery,
    only_events_or_adapter_errors,
)

# DESIGN.md's example source, key for key.
DESIGN_MAPPING = {
    "alerts": "checks[]",
    "status": "state == 'DOWN' && 'firing' || 'resolved'",
    "dedup_key": "id",
    "severity": "'critical'",
    "summary": "message",
    "labels": "{host: host, check: name}",
}
BODY = {
    "checks": [
        {"id": "c-1", "state": "DOWN", "message": "db1 unreachable", "host": "db1", "name": "ping"},
        {"id": 2, "state": "UP", "message": "web1 back", "host": "web1", "name": "http"},
    ]
}


def _delivery(document: Any) -> Delivery:
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT)


def test_designs_example_mapping_gives_one_event_per_check() -> None:
    check(
        parse,
        _delivery(BODY),
        [
            Event(
                status="firing",
                dedup_key="c-1",
                severity="critical",
                summary="db1 unreachable",
                occurred_at=RECEIVED_AT,
                labels={"host": "db1", "check": "ping"},
            ),
            Event(
                status="resolved",
                dedup_key="2",
                severity="critical",
                summary="web1 back",
                occurred_at=RECEIVED_AT,
                labels={"host": "web1", "check": "http"},
            ),
        ],
        DESIGN_MAPPING,
    )


def test_optional_expressions_map_time_details_and_links() -> None:
    mapping = {
        "status": "'firing'",
        "dedup_key": "id",
        "occurred_at": "at",
        "details": "out",
        "links": "[url, runbook]",
    }
    body = {
        "id": 7,
        "at": "2026-11-29T10:00:00+01:00",
        "out": "boom",
        "url": "https://x.test",
        "runbook": None,
    }
    event = parse(_delivery(body), mapping)[0]
    assert event.occurred_at == datetime(2026, 11, 29, 9, tzinfo=UTC)
    assert event.details == "boom"
    assert event.links == ["https://x.test"]
    assert event.raw == body
    assert parse(_delivery({**body, "at": 1764406800}), mapping)[0].occurred_at == datetime(
        2025, 11, 29, 9, tzinfo=UTC
    )


def test_a_real_payload_maps_through_generic() -> None:
    # Azure Monitor's common schema, read without its own adapter.
    mapping = {
        "status": "data.essentials.monitorCondition == 'Fired' && 'firing' || 'resolved'",
        "dedup_key": "data.essentials.alertId",
        "severity": "data.essentials.severity == 'Sev0' && 'critical' || 'warning'",
        "summary": "data.essentials.alertRule",
        "labels": "{signal: data.essentials.signalType, rule: data.essentials.alertRule}",
        "occurred_at": "data.essentials.resolvedDateTime || data.essentials.firedDateTime",
    }
    event = parse(load_delivery("azure-monitor/metric_alert_resolved.json"), mapping)[0]
    assert (event.status, event.severity, event.summary) == ("resolved", "warning", "WCUS-R2-Gen2")
    assert event.labels == {"signal": "Metric", "rule": "WCUS-R2-Gen2"}
    assert event.occurred_at == datetime(2019, 3, 22, 14, 3, 16, 224631, tzinfo=UTC)


def test_a_get_with_query_fields_is_mapped_as_its_fields() -> None:
    delivery = Delivery(body=b"", received_at=RECEIVED_AT, query={"id": "q1", "state": "DOWN"})
    mapping = {"status": "state == 'DOWN' && 'firing' || 'resolved'", "dedup_key": "id"}
    assert parse(delivery, mapping)[0].status == "firing"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"status": "state"},
            "settings.status: expected 'firing' or 'resolved', got str \"DOWN\" at alerts[0]",
        ),
        (
            {"dedup_key": "missing"},
            "settings.dedup_key: expected a non-empty string or number, got null at alerts[0]",
        ),
        (
            {"severity": "'urgent'"},
            "settings.severity: expected one of critical, high, warning, info",
        ),
        ({"labels": "host"}, "settings.labels: expected an object"),
        ({"labels": "{nested: @}"}, "settings.labels.nested: expected a string, number or boolean"),
        ({"summary": "[message]"}, "settings.summary: expected a string, got list"),
        ({"alerts": "checks[0]"}, "settings.alerts: expected a list of alerts, got dict"),
        ({"alerts": "nothing"}, "settings.alerts: expected a list of alerts, got null"),
        ({"summary": "abs(message)"}, "settings.summary: failed on alerts[0]"),
    ],
)
def test_wrong_types_name_the_setting_and_the_alert(changes: dict[str, str], message: str) -> None:
    check(parse, _delivery(BODY), Raises(message), {**DESIGN_MAPPING, **changes})


def test_settings_refuse_expressions_that_do_not_compile() -> None:
    with pytest.raises(ValueError, match="(?s)status.*not a JMESPath expression"):
        Settings.model_validate({"status": "state ==", "dedup_key": "id"})
    with pytest.raises(ValueError, match="extra"):
        Settings.model_validate({"status": "'firing'", "dedup_key": "id", "title": "x"})
    with pytest.raises(ValueError, match="dedup_key"):
        Settings.model_validate({"status": "'firing'"})
    check(
        parse,
        _delivery(BODY),
        Raises("generic adapter settings"),
        {"status": "((", "dedup_key": "id"},
    )


FUZZ_MAPPING = {
    "alerts": "alerts",
    "status": "status",
    "dedup_key": "key",
    "severity": "severity",
    "summary": "summary",
    "labels": "labels",
    "occurred_at": "at",
    "details": "details",
    "links": "links",
}
alert_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["firing", "resolved"]) | json_values,
        "key": st.text(max_size=5) | json_values,
        "severity": st.sampled_from(["critical", "info"]) | json_values,
        "summary": json_values,
        "labels": st.dictionaries(st.text(max_size=5), json_values, max_size=3) | json_values,
        "at": st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=25) | json_values,
        "details": json_values,
        "links": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(body=st.fixed_dictionaries({"alerts": st.lists(alert_like, max_size=3) | json_values}))
def test_random_alerts_give_events_or_adapter_errors(body: dict[str, Any]) -> None:
    only_events_or_adapter_errors(parse, _delivery(body), FUZZ_MAPPING)


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=200) | json_values.map(orjson.dumps))
def test_random_bodies_give_events_or_adapter_errors(body: bytes) -> None:
    only_events_or_adapter_errors(
        parse, Delivery(body=body, received_at=RECEIVED_AT), DESIGN_MAPPING
    )
