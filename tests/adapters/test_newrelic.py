"""New Relic (Workflows and legacy channel): hand-written fixture expectations, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings

from adapters.alert_sources import Delivery
from adapters.alert_sources.newrelic import parse
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

WORKFLOW_LABELS = {
    "priority": "CRITICAL",
    "impacted_entities": "MAIN-APP-UBUNTU",
    "total_incidents": "1",
    "is_correlated": "false",
    "sources": "newrelic",
    "alert_policy_names": "Golden Signals",
    "alert_condition_names": "High CPU",
    "workflow_name": "DBA Team workflow",
}

EXPECTATIONS: dict[str, Expectation] = {
    "newrelic/workflow_default_issue_created.json": [
        Event(
            status="firing",
            dedup_key="issue:208c5e92-f250-40be-b7c2-50508c268c15",
            severity="critical",
            summary="MAIN-APP-UBUNTU query result is > 2.0 for 1 minutes on 'High CPU'",
            occurred_at=datetime(2024, 4, 22, 6, 36, 29, 495000, tzinfo=UTC),
            labels={**WORKFLOW_LABELS, "state": "CREATED", "trigger": "INCIDENT_ADDED"},
            links=[
                "https://radar-api.service.newrelic.com/accounts/1/issues/"
                "0ea2df1c-adab-45d2-aae0-042b609d2322?notifier=SLACK"
            ],
        )
    ],
    "newrelic/workflow_default_issue_closed.json": [
        Event(
            status="resolved",
            dedup_key="issue:95a9344a-2590-48ce-8d83-07e28b6d22c6",
            severity="critical",
            summary="main_app-UBUNTU query result is > 2.0 for 1 minutes on 'High CPU'",
            # A close happens at the issue's last update, not at its creation.
            occurred_at=datetime(2024, 4, 22, 6, 17, 37, 383000, tzinfo=UTC),
            labels={
                **WORKFLOW_LABELS,
                "impacted_entities": "main_app-UBUNTU",
                "state": "CLOSED",
                "trigger": "INCIDENT_CLOSED",
            },
        )
    ],
    "newrelic/legacy_channel_test_notification.json": [
        Event(
            status="firing",
            dedup_key="incident:11111:0",
            severity="info",
            summary="New Relic Alert - Test Condition: I am a test Violation",
            occurred_at=datetime(2020, 9, 25, 11, 23, 27, 849000, tzinfo=UTC),
            labels={
                "account_id": "11111",
                "account_name": "Myaccount (Staging)",
                "policy_name": "New Relic Alert - Test Policy",
                "condition_name": "New Relic Alert - Test Condition",
                "condition_id": "0",
                "event_type": "INCIDENT",
                "severity": "INFO",
                "target_products": "TESTING",
                "target_types": "Application",
            },
            test=True,
            links=[
                "https://alerts.newrelic.com/accounts/11111/incidents/0",
                "http://localhost/runbook/url",
            ],
        )
    ],
}


def test_every_newrelic_fixture_has_expectations() -> None:
    assert payload_files("newrelic") == set(EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_by_hand(name: str) -> None:
    check(parse, load_delivery(name), EXPECTATIONS[name])


def _changed(name: str, **changes: object) -> Delivery:
    document = orjson.loads(load_delivery(name).body)
    document.update(changes)
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT)


def test_created_and_closed_of_one_issue_share_the_dedup_key() -> None:
    # The two captured fixtures are of different issues; the same issue closing keeps its id.
    created = parse(load_delivery("newrelic/workflow_default_issue_created.json"), {})[0]
    closed = parse(_changed("newrelic/workflow_default_issue_created.json", state="CLOSED"), {})[0]
    assert closed.status == "resolved"
    assert created.dedup_key == closed.dedup_key


def test_legacy_open_and_closed_share_the_dedup_key_and_real_incidents_are_not_tests() -> None:
    name = "newrelic/legacy_channel_test_notification.json"
    opened = parse(_changed(name, incident_id=42), {})[0]
    closed = parse(_changed(name, incident_id=42, current_state="closed"), {})[0]
    assert (opened.status, closed.status) == ("firing", "resolved")
    assert opened.dedup_key == closed.dedup_key == "incident:11111:42"
    assert not opened.test


@pytest.mark.parametrize(
    ("priority", "severity"),
    [("CRITICAL", "critical"), ("HIGH", "high"), ("MEDIUM", "warning"), ("LOW", "info")],
)
def test_it_maps_workflow_priorities(priority: str, severity: str) -> None:
    name = "newrelic/workflow_default_issue_created.json"
    assert parse(_changed(name, priority=priority), {})[0].severity == severity


def test_dollar_words_in_free_text_are_not_taken_for_template_variables() -> None:
    name = "newrelic/legacy_channel_test_notification.json"
    event = parse(_changed(name, details="Spend over $BUDGET_LIMIT"), {})[0]
    assert event.details == "Spend over $BUDGET_LIMIT"
    check(
        parse, _changed(name, current_state="$INCIDENT_STATE"), Raises("current_state: unrendered")
    )


def test_acknowledged_issues_are_still_firing() -> None:
    name = "newrelic/workflow_default_issue_created.json"
    assert parse(_changed(name, state="ACKNOWLEDGED"), {})[0].status == "firing"


@pytest.mark.parametrize(
    ("delivery", "message"),
    [
        (_changed("newrelic/workflow_default_issue_created.json", state="BOGUS"), "state:"),
        (_changed("newrelic/workflow_default_issue_created.json", id=""), "id:"),
        (
            _changed("newrelic/workflow_default_issue_created.json", id="{{issueId}}"),
            "id: unrendered placeholder {{issueId}}",
        ),
        (_changed("newrelic/legacy_channel_test_notification.json", severity="LOUD"), "severity"),
        (Delivery(body=b"not json", received_at=RECEIVED_AT), "not valid JSON"),
    ],
)
def test_it_names_the_wrong_field(delivery: Delivery, message: str) -> None:
    check(parse, delivery, Raises(message))


@settings(max_examples=150, deadline=None)
@given(body=bodies("newrelic"))
def test_random_bodies_give_events_or_adapter_errors(body: bytes) -> None:
    only_events_or_adapter_errors(parse, Delivery(body=body, received_at=RECEIVED_AT))
