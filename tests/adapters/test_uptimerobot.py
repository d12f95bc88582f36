"""UptimeRobot webhooks: query string, form and JSON templates with literal `*variables*`."""

from __future__ import annotations

import pytest

from adapters.alert_sources import AdapterError, Delivery
from adapters.alert_sources.uptimerobot import parse
from tests.adapters import RECEIVED, Ev, Expect, check_fixture, parse_fixture

JSON = {"content-type": "application/json"}

EXPECTATIONS: dict[str, Expect] = {
    # The template users paste, every value still a *variable*: refused with a clear 400.
    "uptimerobot/json_all_variables_template.json": Expect(
        headers=JSON, error="every field is an unreplaced *variable*"
    ),
    "uptimerobot/json_camel_down_zulip.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="firing",
                dedup_key="monitor:784350743",
                severity="critical",
                summary="ZUTesting: HTTP 502 - Bad Gateway",
                # *alertFriendlyDuration* arrived literally: treated as absent
                labels={
                    "monitor_id": "784350743",
                    "monitor_name": "ZUTesting",
                    "monitor_url": "http://7d398dfc.ngrok.io",
                    "alert_type": "1",
                    "alert_type_name": "Down",
                },
                occurred_at="received",  # no alertDateTime in this template
                links=["http://7d398dfc.ngrok.io"],
            )
        ],
    ),
    # snake_case template without monitorID: keyed on the monitor URL instead
    "uptimerobot/json_snake_down_zulip.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="firing",
                dedup_key="url:server1.example.com",
                severity="critical",
                summary="Web Server: Host Is Unreachable",
                labels={
                    "monitor_name": "Web Server",
                    "monitor_url": "server1.example.com",
                    "alert_type": "1",
                    "alert_type_name": "Down",
                },
                occurred_at="received",
                links=[],  # not an http(s) URL
            )
        ],
    ),
    "uptimerobot/json_snake_up_zulip.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="resolved",
                dedup_key="url:server2.example.com",
                severity="critical",
                summary="Mail Server: Host Is Reachable",
                labels={
                    "monitor_name": "Mail Server",
                    "monitor_url": "server2.example.com",
                    "alert_type": "2",
                    "alert_type_name": "Up",
                    "alert_friendly_duration": "44 minutes and 37 seconds",
                },
                occurred_at="received",
            )
        ],
    ),
    "uptimerobot/querystring_down_real.txt": Expect(
        events=[
            Ev(
                status="firing",
                dedup_key="monitor:778368750",
                severity="critical",
                summary="ur checker: HTTP 500 - Internal Server Error",
                # monitorAlertContacts holds contact URLs (Beacon's secret one too): dropped
                labels={
                    "monitor_id": "778368750",
                    "monitor_name": "ur checker",
                    "monitor_url": "http://blabla.unreal4u.com",
                    "alert_type": "1",
                    "alert_type_name": "Down",
                },
                occurred_at="2016-11-27T02:54:06Z",  # alertDateTime 1480215246
                links=["http://blabla.unreal4u.com"],
            )
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("uptimerobot", name, EXPECTATIONS[name])


def test_it_keeps_the_alert_contacts_out_of_raw() -> None:
    (event,) = parse_fixture("uptimerobot", "uptimerobot/querystring_down_real.txt", Expect())
    assert "monitorAlertContacts" not in event.raw
    assert event.raw["monitorID"] == "778368750"


def fields(**values: str) -> Delivery:
    return Delivery(body=b"", received_at=RECEIVED, form=values)


def test_down_and_up_posted_as_a_form_share_the_dedup_key() -> None:
    (down,) = parse(fields(monitorID="7", alertType="1", alertDateTime="1700000000"), {})
    (up,) = parse(fields(monitorID="7", alertType="2", alertDateTime="1700000600"), {})
    assert (down.status, up.status) == ("firing", "resolved")
    assert down.dedup_key == up.dedup_key == "monitor:7"


def test_it_decodes_html_entities_in_names() -> None:
    (event,) = parse(
        fields(monitorID="7", alertType="1", monitorFriendlyName="Test &#40;staging&#41;"), {}
    )
    assert event.labels["monitor_name"] == "Test (staging)"


def test_an_ssl_expiry_alert_is_info_and_never_ends_the_down_alert() -> None:
    (event,) = parse(fields(monitorID="7", alertType="3", sslExpiryDaysLeft="5"), {})
    assert (event.status, event.severity, event.dedup_key) == ("firing", "info", "monitor:7:ssl")
    assert event.labels["ssl_expiry_days_left"] == "5"


def test_it_falls_back_to_the_friendly_type_name() -> None:
    (event,) = parse(fields(monitorID="7", alertTypeFriendlyName="Up"), {})
    assert event.status == "resolved"


def test_it_refuses_an_unreplaced_alert_type() -> None:
    with pytest.raises(AdapterError, match=r"alertType: unreplaced placeholder '\*alertType\*'"):
        parse(fields(monitorID="7", alertType="*alertType*"), {})


def test_it_refuses_a_non_numeric_alert_type() -> None:
    with pytest.raises(AdapterError, match="alertType: expected 1 \\(down\\)"):
        parse(fields(monitorID="7", alertType="down"), {})


def test_it_refuses_a_delivery_without_fields() -> None:
    with pytest.raises(AdapterError, match="expected query-string, form or JSON fields"):
        parse(Delivery(body=b"", received_at=RECEIVED), {})
