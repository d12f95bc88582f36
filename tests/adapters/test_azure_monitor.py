"""Azure Monitor (common alert schema): fixtures with hand-written expectations, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings

from adapters.alert_sources import Delivery
from adapters.alert_sources.azure_monitor import parse
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

METRIC_ALERT_ID = (
    "/subscriptions/<subscription ID>/providers/Microsoft.AlertsManagement/alerts/"
    "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
)
METRIC_LABELS = {
    "alert_rule": "WCUS-R2-Gen2",
    "azure_severity": "Sev3",
    "signal_type": "Metric",
    "monitoring_service": "Platform",
    "target_resource": "/subscriptions/<subscription ID>/resourcegroups/pipelinealertrg"
    "/providers/microsoft.compute/virtualmachines/wcus-r2-gen2",
    "configuration_items": "wcus-r2-gen2",
    "origin_alert_id": "3f2d4487-b0fc-4125-8bd5-7ad17384221e_PipeLineAlertRG_"
    "microsoft.insights_metricAlerts_WCUS-R2-Gen2_-117781227",
    "condition_type": "SingleResourceMultipleMetricCriteria",
}

EXPECTATIONS: dict[str, Expectation] = {
    "azure-monitor/metric_alert_fired.json": [
        Event(
            status="firing",
            dedup_key=METRIC_ALERT_ID,
            severity="info",
            summary="WCUS-R2-Gen2",
            occurred_at=datetime(2019, 3, 22, 13, 58, 24, 371321, tzinfo=UTC),
            labels=METRIC_LABELS,
        )
    ],
    "azure-monitor/metric_alert_resolved.json": [
        Event(
            status="resolved",
            dedup_key=METRIC_ALERT_ID,
            severity="info",
            summary="WCUS-R2-Gen2",
            occurred_at=datetime(2019, 3, 22, 14, 3, 16, 224631, tzinfo=UTC),
            labels=METRIC_LABELS,
        )
    ],
    "azure-monitor/log_alert_v2_fired.json": [
        Event(
            status="firing",
            dedup_key="/subscriptions/12345a-1234b-123c-123d-12345678e/providers/"
            "Microsoft.AlertsManagement/alerts/12345a-1234b-123c-123d-12345678e",
            severity="info",
            summary="AcmeRule: log alert rule V2",
            occurred_at=datetime(2020, 7, 9, 14, 4, 49, 996450, tzinfo=UTC),
            labels={
                "alert_rule": "AcmeRule",
                "azure_severity": "Sev4",
                "signal_type": "Log",
                "monitoring_service": "Log Alerts V2",
                "target_resource": "/subscriptions/12345a-1234b-123c-123d-12345678e/"
                "resourcegroups/ai-engineering/providers/microsoft.compute/virtualmachines/testvm",
                "configuration_items": "testvm",
                "origin_alert_id": "123c123d-1a23-1bf3-ba1d-dd1234ff5a67",
                "condition_type": "LogQueryCriteria",
                "property.name1": "value1",
                "property.name2": "value2",
            },
            links=[
                "https://portal.azure.com#@12f345bf-12f3-12af-12ab-1d2cd345db67/blade/"
                "Microsoft_Azure_Monitoring_Logs/LogsBlade/source/Alerts.EmailLinks/..."
            ],
        )
    ],
}


def test_every_azure_monitor_fixture_has_expectations() -> None:
    assert payload_files("azure-monitor") == set(EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_by_hand(name: str) -> None:
    check(parse, load_delivery(name), EXPECTATIONS[name])


def test_fired_and_resolved_share_the_dedup_key() -> None:
    fired = parse(load_delivery("azure-monitor/metric_alert_fired.json"), {})
    resolved = parse(load_delivery("azure-monitor/metric_alert_resolved.json"), {})
    assert fired[0].dedup_key == resolved[0].dedup_key


def _with_essentials(**changes: object) -> Delivery:
    document = orjson.loads(load_delivery("azure-monitor/metric_alert_fired.json").body)
    document["data"]["essentials"].update(changes)
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("Sev0", "critical"), ("Sev1", "high"), ("Sev2", "warning"), ("Sev4", "info")],
)
def test_it_maps_azure_severities(severity: str, expected: str) -> None:
    assert parse(_with_essentials(severity=severity), {})[0].severity == expected


def test_it_keeps_custom_properties_as_labels() -> None:
    document = orjson.loads(load_delivery("azure-monitor/metric_alert_fired.json").body)
    document["data"]["customProperties"] = {"service": "api", "team": "platform"}
    event = parse(Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT), {})[0]
    assert event.labels["property.service"] == "api"
    assert event.labels["property.team"] == "platform"


@pytest.mark.parametrize(
    ("delivery", "message"),
    [
        (_with_essentials(monitorCondition="Bogus"), "data.essentials.monitorCondition"),
        (_with_essentials(severity="Sev9"), "data.essentials.severity: expected one of"),
        (_with_essentials(alertId=None), "data.essentials.alertId"),
        (
            Delivery(
                body=b'{"schemaId": "AzureMonitorMetricAlert", "data": {}}', received_at=RECEIVED_AT
            ),
            "enable the common alert schema",
        ),
        (Delivery(body=b"[]", received_at=RECEIVED_AT), "expected a JSON object"),
        (Delivery(body=b"", received_at=RECEIVED_AT), "empty body"),
    ],
)
def test_it_names_the_wrong_field(delivery: Delivery, message: str) -> None:
    check(parse, delivery, Raises(message))


@settings(max_examples=150, deadline=None)
@given(body=bodies("azure-monitor"))
def test_random_bodies_give_events_or_adapter_errors(body: bytes) -> None:
    only_events_or_adapter_errors(parse, Delivery(body=body, received_at=RECEIVED_AT))
