"""Datadog webhooks: rendered custom payloads, and templates refused with a clear 400."""

from __future__ import annotations

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery
from adapters.alert_sources.datadog import parse
from tests.adapters import RECEIVED, Ev, Expect, check_fixture, parse_fixture

JSON = {"content-type": "application/json"}
DOCK_TAGS = {
    "tag.availability-zone": "us-west-1a",
    "tag.host": "i-3b93aafb",
    "tag.image": "ami-9f305fff",
    "tag.instance-type": "c3.large",
    "tag.kernel": "none",
    "tag.monitor": "true",  # a bare tag
    "tag.org": "6585",
    "tag.region": "us-west-1",
    "tag.role": "dock",
    "tag.security-group": "sg-59a3503c,sg-cb8e7dae",  # a repeated key keeps both values
}
DOCK_KEY = "title:Dock is almost out of memory...:host:i-3b93aafb"


def dock(transition: str, status: str, event_id: str, when: str) -> Ev:
    return Ev(
        status=status,
        dedup_key=DOCK_KEY,
        severity="critical",  # no priority or alert_type in this template
        summary=f"[{transition} on {{host:i-3b93aafb}}] Dock is almost out of memory...",
        labels={
            "scope": "host:i-3b93aafb",
            "host": "i-3b93aafb",
            "transition": transition,
            "event_type": "metric_alert_monitor",
            **DOCK_TAGS,
        },
        occurred_at=when,
        links=[f"https://app.datadoghq.com/event/event?id={event_id}"],
    )


EXPECTATIONS: dict[str, Expect] = {
    "datadog/default_payload_template.json": Expect(
        headers=JSON, error="unrendered template variable '$EVENT_MSG'"
    ),
    "datadog/recommended_template_incidentrelay.json": Expect(
        headers=JSON, error="alert_title: unrendered template variable '$ALERT_TITLE'"
    ),
    "datadog/recovered_custom_payload_2015.json": Expect(
        headers=JSON,
        # date 1448435477000 ms
        events=[dock("Recovered", "resolved", "3089903685627551077", "2015-11-25T07:11:17Z")],
    ),
    "datadog/triggered_custom_payload_2015.json": Expect(
        headers=JSON,
        # date 1448435530000 ms
        events=[dock("Triggered", "firing", "3089904566766935419", "2015-11-25T07:12:10Z")],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("datadog", name, EXPECTATIONS[name])


def test_trigger_and_recovery_share_the_dedup_key() -> None:
    (fire,) = parse_fixture("datadog", "datadog/triggered_custom_payload_2015.json", Expect())
    (end,) = parse_fixture("datadog", "datadog/recovered_custom_payload_2015.json", Expect())
    assert (fire.status, end.status) == ("firing", "resolved")
    assert fire.dedup_key == end.dedup_key


def test_it_leaves_a_shared_secret_out_of_raw() -> None:
    (event,) = parse_fixture("datadog", "datadog/triggered_custom_payload_2015.json", Expect())
    assert "secret" not in event.raw
    assert event.raw["event_id"] == "3089904566766935419"


def rendered(**fields: str) -> Delivery:
    document = {
        "alert_title": "CPU high on web-1",
        "alert_id": "12345",
        "alert_cycle_key": "987",
        "alert_transition": "Triggered",
        "alert_type": "error",
        "alert_priority": "P2",
        "alert_scope": "host:web-1",
        "date_posix": "1700000000",
        **fields,
    }
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED)


def test_it_prefers_the_alert_cycle_key_and_maps_priority_to_severity() -> None:
    (event,) = parse(rendered(), {})
    assert (event.dedup_key, event.severity, event.status) == ("cycle:987", "high", "firing")
    assert event.labels["monitor_id"] == "12345"
    assert event.labels["scope"] == "host:web-1"
    assert event.occurred_at.isoformat() == "2023-11-14T22:13:20+00:00"


def test_a_warning_transition_is_never_more_than_a_warning() -> None:
    (event,) = parse(rendered(alert_transition="Warn", alert_priority="P1"), {})
    assert event.severity == "warning"


def test_recovered_resolves_under_the_same_cycle_key() -> None:
    (event,) = parse(rendered(alert_transition="Recovered", alert_type="success"), {})
    assert (event.status, event.dedup_key) == ("resolved", "cycle:987")


def test_it_keys_on_monitor_and_scope_without_a_cycle_key() -> None:
    (event,) = parse(rendered(alert_cycle_key=""), {})
    assert event.dedup_key == "monitor:12345:host:web-1"


def test_it_names_an_unknown_transition() -> None:
    with pytest.raises(AdapterError, match="alert_transition: expected one of .*'Exploded'"):
        parse(rendered(alert_transition="Exploded"), {})


def test_it_asks_for_the_transition_when_nothing_tells_firing_from_recovered() -> None:
    body = orjson.dumps({"title": "something", "id": "1"})
    with pytest.raises(AdapterError, match=r"add \"alert_transition\""):
        parse(Delivery(body=body, received_at=RECEIVED), {})


def test_it_reads_a_payload_encoded_as_form() -> None:
    form = {"alert_cycle_key": "987", "alert_transition": "Recovered", "alert_title": "CPU"}
    delivery = Delivery(
        body=b"", received_at=RECEIVED, form=form, content_type="application/x-www-form-urlencoded"
    )
    (event,) = parse(delivery, {})
    assert (event.status, event.dedup_key) == ("resolved", "cycle:987")


def test_a_title_key_without_a_scope_has_no_trailing_colon() -> None:
    body = orjson.dumps({"title": "[Triggered] CPU high", "body": "x", "date": "1764460000000"})
    (event,) = parse(Delivery(body=body, received_at=RECEIVED), {})
    assert event.dedup_key == "title:CPU high"
