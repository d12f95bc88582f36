"""Zabbix media types: hand-written fixture expectations, time zones, templates, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings

from adapters.alert_sources import Delivery
from adapters.alert_sources.zabbix import Settings, parse
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

PROBLEM = "Zabbix agent on www.example.com is unreachable for 5 minutes"
EVENT_URL = "https://zabbix.example.com/tr_events.php?triggerid=14032&eventid=10528"
EDA = "zabbix/eda_mediatype_problem_rendered.json"
ONCALL_LABELS = {
    "event_id": "10528",
    "event_name": PROBLEM,
    "host": "www.example.com",
    "zabbix_severity": "Average",
    "trigger_id": "14032",
}

EXPECTATIONS: dict[str, Expectation] = {
    "zabbix/eda_mediatype_params_template.json": Raises(
        "event_id: unrendered placeholder {EVENT.ID}: Zabbix did not render"
    ),
    EDA: [
        Event(
            status="firing",
            dedup_key="event:10528",
            severity="high",
            summary=PROBLEM,
            # event_datetime_timestamp 1709298126
            occurred_at=datetime(2024, 3, 1, 13, 2, 6, tzinfo=UTC),
            labels={
                "event_id": "10528",
                "event_name": PROBLEM,
                "event_source": "0",
                "zabbix_severity": "Average",
                "host": "www.example.com",
                "host_id": "10084",
                "host_ip": "192.0.2.10",
                "host_port": "10050",
                "host_groups": "Linux servers",
                "trigger_id": "14032",
                "trigger_name": PROBLEM,
                "operation_data": "Up (1)",
                "acknowledged": "No",
                "monitoring_source": "Zabbix sever",
                "tag.class": "os",
                "tag.component": "system",
                "tag.scope": "availability",
            },
        )
    ],
    "zabbix/grafana_oncall_mediatype_problem_rendered.json": [
        Event(
            status="firing",
            dedup_key="event:10528",
            severity="high",
            summary=PROBLEM,
            # "Problem started at 13:02:06 on 2024.03.01", server time zone UTC by default
            occurred_at=datetime(2024, 3, 1, 13, 2, 6, tzinfo=UTC),
            labels={**ONCALL_LABELS, "operation_data": "Up (1)"},
            links=[EVENT_URL],
        )
    ],
    "zabbix/grafana_oncall_mediatype_recovery_rendered.json": [
        Event(
            status="resolved",
            dedup_key="event:10528",
            severity="high",
            summary=PROBLEM,
            # "Problem has been resolved at 13:14:56 on 2024.03.01"
            occurred_at=datetime(2024, 3, 1, 13, 14, 56, tzinfo=UTC),
            labels=ONCALL_LABELS,
            links=[EVENT_URL],
        )
    ],
    "zabbix/zulip_mediatype_problem.json": [
        Event(
            status="firing",
            dedup_key="trigger:14032",
            severity="high",
            summary=PROBLEM,
            occurred_at=RECEIVED_AT,  # this media type sends no time
            labels={
                "host": "www.example.com",
                "zabbix_severity": "Average",
                "trigger_name": PROBLEM,
                "trigger_id": "14032",
                "event_id": "10528",
                "item": "Agent ping is Up (1)",
            },
            links=[EVENT_URL],
        )
    ],
    "zabbix/zulip_mediatype_ok.json": [
        Event(
            status="resolved",
            dedup_key="trigger:14032",
            severity="high",
            summary="Zabbix agent on www.example.com is reachable",
            occurred_at=RECEIVED_AT,
            labels={
                "host": "www.example.com",
                "zabbix_severity": "Average",
                "trigger_name": "Zabbix agent on www.example.com is reachable",
                "trigger_id": "14032",
                "event_id": "10529",
                "item": "Agent ping is Up (1)",
            },
            links=["https://zabbix.example.com/tr_events.php?triggerid=14032&eventid=10529"],
        )
    ],
}


def test_every_zabbix_fixture_has_expectations() -> None:
    assert payload_files("zabbix") == set(EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_by_hand(name: str) -> None:
    check(parse, load_delivery(name), EXPECTATIONS[name])


@pytest.mark.parametrize(
    ("problem", "recovery"),
    [
        (
            "zabbix/grafana_oncall_mediatype_problem_rendered.json",
            "zabbix/grafana_oncall_mediatype_recovery_rendered.json",
        ),
        ("zabbix/zulip_mediatype_problem.json", "zabbix/zulip_mediatype_ok.json"),
    ],
)
def test_problem_and_recovery_share_the_dedup_key(problem: str, recovery: str) -> None:
    assert parse(load_delivery(problem), {})[0].dedup_key == (
        parse(load_delivery(recovery), {})[0].dedup_key
    )


def _params(**changes: object) -> Delivery:
    document = orjson.loads(load_delivery(EDA).body)
    document.update(changes)
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT)


def test_a_recovery_ends_at_the_recovery_time_in_the_server_zone() -> None:
    recovery = _params(
        event_value=0, event_recovery_date="2024.03.01", event_recovery_time="14:14:56"
    )
    event = parse(recovery, {"timezone": "Europe/Berlin"})[0]
    assert event.status == "resolved"
    assert event.dedup_key == "event:10528"
    assert event.occurred_at == datetime(2024, 3, 1, 13, 14, 56, tzinfo=UTC)


def test_macros_zabbix_leaves_in_optional_fields_are_dropped() -> None:
    # In a problem message {EVENT.RECOVERY.DATE} has no value and stays a macro.
    problem = _params(
        event_recovery_date="{EVENT.RECOVERY.DATE}",
        event_url="{$ZABBIX.URL}/tr_events.php?triggerid=14032&eventid=10528",
        host_name="{HOST.NAME}",
    )
    event = parse(problem, {})[0]
    assert event.status == "firing"
    assert event.links == []
    assert "host_name" not in event.labels
    assert event.raw == orjson.loads(problem.body)  # the original, macros and all


def test_a_recovery_without_its_time_ends_when_received() -> None:
    # {EVENT.DATE} in a recovery message is still the problem's start: not the end.
    assert parse(_params(event_value="0"), {})[0].occurred_at == RECEIVED_AT


def test_local_dates_are_read_in_the_configured_zone() -> None:
    document = orjson.loads(load_delivery(EDA).body)
    del document["event_datetime_timestamp"]
    delivery = Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT)
    event = parse(delivery, {"timezone": "Europe/Berlin"})[0]
    assert event.occurred_at == datetime(2024, 3, 1, 12, 2, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("nseverity", "severity"),
    [(0, "info"), (1, "info"), (2, "warning"), (3, "high"), ("4", "high"), (5, "critical")],
)
def test_it_maps_numeric_severities(nseverity: object, severity: str) -> None:
    assert parse(_params(event_nseverity=nseverity), {})[0].severity == severity


def test_a_malformed_link_only_loses_the_ids_it_would_give() -> None:
    body = {
        "status": "PROBLEM",
        "hostname": "db1",
        "trigger": "down",
        "link": "http://[oops/x?triggerid=1",
    }
    event = parse(Delivery(body=orjson.dumps(body), received_at=RECEIVED_AT), {})[0]
    assert event.dedup_key == "trigger:db1/down"
    assert "trigger_id" not in event.labels


def test_raw_tagsjson_becomes_tag_labels() -> None:
    tags = '[{"tag": "scope", "value": "availability"}, {"tag": "team", "value": ""}]'
    labels = parse(_params(event_tags=tags), {})[0].labels
    assert labels["tag.scope"] == "availability"
    assert labels["tag.team"] == "true"  # a tag without a value, as the conventions say
    assert "tag.class" not in labels


def test_settings_refuse_an_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        Settings.model_validate({"timezone": "Mars/Base"})
    check(parse, _params(), Raises("timezone"), {"timezone": "America"})


@pytest.mark.parametrize(
    ("delivery", "message"),
    [
        (_params(event_value=7), "event_value: expected one of '1', '0', got '7'"),
        (_params(event_nseverity=9), "event_nseverity: expected one of"),
        (_params(event_id="*UNKNOWN*"), "event_id: expected the problem's {EVENT.ID}"),
        (_params(event_id="{EVENT.ID}"), "event_id: unrendered placeholder {EVENT.ID}"),
        (_params(event_value="{EVENT.VALUE}"), "event_value: unrendered placeholder"),
        (
            Delivery(body=b'{"alert_uid": "{EVENT.ID}", "state": "ok"}', received_at=RECEIVED_AT),
            "alert_uid: unrendered placeholder {EVENT.ID}",
        ),
        (
            Delivery(body=b'{"status": "MAYBE", "trigger": "t"}', received_at=RECEIVED_AT),
            "status: expected 'PROBLEM' or 'OK'",
        ),
        (
            Delivery(body=b'{"alert_uid": "1", "state": "odd"}', received_at=RECEIVED_AT),
            "state: expected one of 'alerting', 'ok'",
        ),
        (Delivery(body=b'{"hello": 1}', received_at=RECEIVED_AT), "body: expected the keys"),
    ],
)
def test_it_names_the_wrong_field(delivery: Delivery, message: str) -> None:
    check(parse, delivery, Raises(message))


@settings(max_examples=200, deadline=None)
@given(body=bodies("zabbix"))
def test_random_bodies_give_events_or_adapter_errors(body: bytes) -> None:
    only_events_or_adapter_errors(parse, Delivery(body=body, received_at=RECEIVED_AT))
