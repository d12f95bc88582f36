"""Uptime Kuma webhooks in every preset: JSON, form-data, GET query string, custom bodies."""

from __future__ import annotations

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery
from adapters.alert_sources.uptime_kuma import parse
from tests.adapters import RECEIVED, Ev, Expect, check_fixture, parse_fixture

MONITOR_89 = {
    "monitor_id": "89",
    "monitor_name": "test",
    "monitor_type": "http",
    "monitor_path": "test",
}
JSON = {"content-type": "application/json", "user-agent": "Uptime-Kuma/1.23.0"}


def down_89(**changes: object) -> Ev:
    values: dict[str, object] = {
        "status": "firing",
        "dedup_key": "monitor:89",
        "severity": "critical",
        "summary": "[test] [🔴 Down] timeout of 16000ms exceeded",
        "labels": {**MONITOR_89, "monitor_url": "https://exampleXYZ.com"},
        # heartbeat.time is UTC without a zone suffix
        "occurred_at": "2023-07-31T18:56:15.374Z",
        "links": ["https://exampleXYZ.com"],
    }
    values.update(changes)
    return Ev(**values)  # type: ignore[arg-type]


EXPECTATIONS: dict[str, Expect] = {
    # heartbeat null: an informational notice, acknowledged as a test event
    "uptime-kuma/cert_expiry_from_source.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="firing",
                dedup_key="notice:certificate_expiry",
                severity="info",
                summary=(
                    "[My Site][https://example.com] server certificate example.com "
                    "will expire in 14 days"
                ),
                labels={"notice": "certificate_expiry"},
                occurred_at="received",
                test=True,
            )
        ],
    ),
    "uptime-kuma/down_dns_v1_23.json": Expect(
        headers=JSON,
        events=[
            down_89(
                summary="[test] [🔴 Down] getaddrinfo ENOTFOUND exampleasdsda.com",
                labels={**MONITOR_89, "monitor_url": "https://exampleasdsda.com"},
                occurred_at="2023-07-31T18:57:44.037Z",
                links=["https://exampleasdsda.com"],
            )
        ],
    ),
    "uptime-kuma/down_v1_23.json": Expect(headers=JSON, events=[down_89()]),
    # multipart/form-data preset: the same JSON in the field `data`
    "uptime-kuma/form_data_down_v1_23.txt": Expect(events=[down_89()]),
    # v2.1+ GET: msg, heartbeat and monitor (abbreviated: no pathName) as query fields
    "uptime-kuma/get_method_down_v2_1plus.txt": Expect(
        events=[
            down_89(
                labels={
                    "monitor_id": "89",
                    "monitor_name": "test",
                    "monitor_type": "http",
                    "monitor_url": "https://exampleXYZ.com",
                }
            )
        ]
    ),
    "uptime-kuma/test_notification_from_source.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="firing",
                dedup_key="notice:test",
                severity="info",
                summary="My Webhook Testing",
                labels={"notice": "test"},
                occurred_at="received",
                test=True,
            )
        ],
    ),
    "uptime-kuma/up_v1_23.json": Expect(
        headers=JSON,
        events=[
            Ev(
                status="resolved",
                dedup_key="monitor:89",
                severity="critical",
                summary="[test] [✅ Up] 200 - OK",
                labels={**MONITOR_89, "monitor_url": "https://example.com"},
                occurred_at="2023-07-31T18:56:57.151Z",
                links=["https://example.com"],
            )
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("uptime-kuma", name, EXPECTATIONS[name])


def test_down_and_up_of_one_monitor_share_the_dedup_key() -> None:
    (down,) = parse_fixture("uptime-kuma", "uptime-kuma/down_v1_23.json", Expect())
    (up,) = parse_fixture("uptime-kuma", "uptime-kuma/up_v1_23.json", Expect())
    assert (down.status, up.status) == ("firing", "resolved")
    assert down.dedup_key == up.dedup_key


def beat(status: int, **monitor: object) -> dict[str, object]:
    return {
        "heartbeat": {
            "monitorID": 5,
            "status": status,
            "time": "2026-01-02 03:04:05.678",
            "msg": "x",
        },
        "monitor": {"id": 5, "name": "API", "type": "port", "url": "https://", **monitor},
        "msg": "[API] x",
    }


def test_it_reads_a_custom_json_body_sent_as_form_urlencoded() -> None:
    body = orjson.dumps(beat(0))
    # Uptime Kuma's custom preset posts a string body, which axios labels urlencoded.
    delivery = Delivery(
        body=body,
        received_at=RECEIVED,
        content_type="application/x-www-form-urlencoded",
        form={body.decode(): ""},
    )
    (event,) = parse(delivery, {})
    assert (event.dedup_key, event.status) == ("monitor:5", "firing")


@pytest.mark.parametrize("status", [2, 3])
def test_it_acknowledges_pending_and_maintenance_beats_without_an_event(status: int) -> None:
    assert parse(Delivery(body=orjson.dumps(beat(status)), received_at=RECEIVED), {}) == []


def test_it_names_an_unknown_heartbeat_status() -> None:
    with pytest.raises(AdapterError, match=r"heartbeat.status: expected 0 \(down\).*got 9"):
        parse(Delivery(body=orjson.dumps(beat(9)), received_at=RECEIVED), {})


def test_it_turns_tags_host_and_port_into_labels_and_skips_the_placeholder_url() -> None:
    document = beat(
        0,
        hostname="db.internal",
        port=5432,
        tags=[{"name": "env", "value": "prod"}, {"name": "db", "value": ""}],
    )
    (event,) = parse(Delivery(body=orjson.dumps(document), received_at=RECEIVED), {})
    assert event.labels == {
        "monitor_id": "5",
        "monitor_name": "API",
        "monitor_type": "port",
        "host": "db.internal",
        "port": "5432",
        "tag.env": "prod",
        "tag.db": "true",
    }
    assert event.links == []
    assert event.occurred_at.isoformat() == "2026-01-02T03:04:05.678000+00:00"


def test_it_points_a_custom_body_without_kuma_fields_to_the_generic_adapter() -> None:
    delivery = Delivery(body=b"status=down&name=API", received_at=RECEIVED)
    with pytest.raises(AdapterError, match="generic adapter"):
        parse(delivery, {})


@pytest.mark.parametrize(
    "document",
    [
        {"foo": "bar"},
        # An Alertmanager delivery sent to the Uptime Kuma source by mistake.
        {"receiver": "x", "status": "firing", "alerts": [{"status": "firing"}]},
        {"heartbeat": None},
    ],
)
def test_a_json_object_without_kumas_fields_is_refused_not_taken_for_a_notice(
    document: dict[str, object],
) -> None:
    with pytest.raises(AdapterError, match="missing .*a source of type generic"):
        parse(Delivery(body=orjson.dumps(document), received_at=RECEIVED), {})


def test_a_custom_body_with_a_heartbeat_needs_no_msg() -> None:
    document = beat(0)
    del document["msg"]
    (event,) = parse(Delivery(body=orjson.dumps(document), received_at=RECEIVED), {})
    assert (event.status, event.summary) == ("firing", "x")


def test_a_tag_key_given_several_values_keeps_them_all() -> None:
    tags = [
        {"name": "region", "value": "eu"},
        {"name": "region", "value": "us"},
        {"name": "region", "value": "eu"},
    ]
    (event,) = parse(Delivery(body=orjson.dumps(beat(0, tags=tags)), received_at=RECEIVED), {})
    assert event.labels["tag.region"] == "eu,us"


def test_it_names_a_form_data_field_that_is_not_json() -> None:
    delivery = Delivery(body=b"", received_at=RECEIVED, form={"data": "{oops"})
    with pytest.raises(AdapterError, match="data: not valid JSON"):
        parse(delivery, {})
