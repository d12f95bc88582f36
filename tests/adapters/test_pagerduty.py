"""PagerDuty webhooks V3: incidents, pagey.ping, delivery ids and v1 signatures."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery, SignatureError
from adapters.alert_sources.pagerduty import parse, verify
from tests.adapters import RECEIVED, Ev, Expect, check_fixture, parse_fixture

HEADERS = {
    "content-type": "application/json",
    "user-agent": "PagerDuty-Webhook/V3.0",
    "x-webhook-id": "6d1f4bd0-1c55-4b8a-9d1e-2f9a7a0b3c11",
    "x-webhook-subscription": "PXSUIZH",
}
PIG = {
    "urgency": "high",
    "service_id": "PA2P440",
    "service_name": "pig208",
    "escalation_policy": "Default",
}


def n8n_capture(path: Path) -> Delivery:
    """The ping fixture is n8n's record of the request: its `body` is what PagerDuty POSTed
    and its `headers` what came with it."""
    capture = orjson.loads(path.read_bytes())
    return Delivery(
        body=orjson.dumps(capture["body"]),
        received_at=RECEIVED,
        headers=capture["headers"],
        content_type=capture["headers"]["content-type"],
    )


def pig_incident(
    event_type: str, status: str, incident: str, number: int, event_id: str, **more: object
) -> Ev:
    values: dict[str, object] = {
        "status": "resolved" if status == "resolved" else "firing",
        "dedup_key": f"incident:{incident}",
        "severity": "critical",  # urgency high, no priority
        "summary": "Test Incident",
        "occurred_at": "received",
        "links": [f"https://pig208.pagerduty.com/incidents/{incident}"],
        # The webhook event's own id (signed with the body), not the X-Webhook-Id header.
        "delivery_id": event_id,
    }
    labels = {
        "event_type": event_type,
        "incident_id": incident,
        "incident_number": str(number),
        "incident_status": status,
        **PIG,
    }
    more_labels: dict[str, str] = more.pop("labels", {})  # type: ignore[assignment]
    values.update(more)
    return Ev(labels={**labels, **more_labels}, **values)  # type: ignore[arg-type]


EXPECTATIONS: dict[str, Expect] = {
    # acknowledged is still open: firing
    "pagerduty/incident_acknowledged_v3.json": Expect(
        headers=HEADERS,
        events=[
            pig_incident(
                "incident.acknowledged",
                "acknowledged",
                "PQ1K5C8",
                10,
                "01BZYK8N47N5JG55J1EEEHPEJI",
                labels={"assignees": "PIG 208"},
                occurred_at="2021-06-04T13:55:30.394Z",
            )
        ],
    ),
    # A priority change on a triggered incident: data.status says it is still firing.
    "pagerduty/incident_priority_updated_docs.json": Expect(
        headers=HEADERS,
        events=[
            Ev(
                status="firing",
                dedup_key="incident:PGR0VU2",
                severity="critical",  # priority P1
                summary="A little bump in the road",
                labels={
                    "event_type": "incident.priority_updated",
                    "incident_id": "PGR0VU2",
                    "incident_number": "2",
                    "incident_status": "triggered",
                    "incident_key": "d3640fbd41094207a1c11e58e46b1662",
                    "urgency": "high",
                    "priority": "P1",
                    "service_id": "PF9KMXH",
                    "service_name": "API Service",
                    "escalation_policy": "Default",
                    "teams": "Engineering",
                    "assignees": "User 123",
                },
                occurred_at="2020-10-02T18:45:22.169Z",
                links=["https://acme.pagerduty.com/incidents/PGR0VU2"],
                delivery_id="5ac64822-4adc-4fda-ade0-410becf0de4f",
            )
        ],
    ),
    "pagerduty/incident_resolved_v3.json": Expect(
        headers=HEADERS,
        events=[
            pig_incident(
                "incident.resolved",
                "resolved",
                "PCPZE64",
                6,
                "01BZYH1JJY09P9LEIST8HG2PMN",
                occurred_at="2021-06-04T13:16:53.816Z",
            )
        ],
    ),
    "pagerduty/incident_triggered_v3.json": Expect(
        headers=HEADERS,
        events=[
            pig_incident(
                "incident.triggered",
                "triggered",
                "PFQZPSY",
                9,
                "01BZYIL05THJDFF2Y08X9SVMTU",
                summary="Test Incident 3",
                labels={"assignees": "PIG 208"},
                occurred_at="2021-06-04T13:35:29.781Z",
            )
        ],
    ),
    "pagerduty/pagey_ping_with_headers.json": Expect(
        prepare=n8n_capture,
        events=[
            Ev(
                status="firing",
                dedup_key="pagey.ping",
                severity="info",
                summary="Hello from your friend Pagey!",
                labels={"event_type": "pagey.ping"},
                occurred_at="2022-10-01T02:30:53.852Z",
                test=True,
                delivery_id="01D8FYLHB5WAOASD!BWY4P3M",
            )
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("pagerduty", name, EXPECTATIONS[name])


def test_triggered_and_resolved_of_one_incident_share_the_dedup_key() -> None:
    path = "pagerduty/incident_triggered_v3.json"
    (fire,) = parse_fixture("pagerduty", path, Expect())
    document = orjson.loads(orjson.dumps(fire.raw))
    document["event"]["event_type"] = "incident.resolved"
    document["event"]["data"]["status"] = "resolved"
    (end,) = parse(Delivery(body=orjson.dumps(document), received_at=RECEIVED), {})
    assert (fire.status, end.status) == ("firing", "resolved")
    assert fire.dedup_key == end.dedup_key


def envelope(event_type: str, data: Mapping[str, object] | None) -> Delivery:
    document = {"event": {"event_type": event_type, "occurred_at": None, "data": data}}
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED)


def test_a_late_update_of_a_resolved_incident_stays_resolved() -> None:
    data = {"id": "P1", "type": "incident", "status": "resolved", "urgency": "low"}
    (event,) = parse(envelope("incident.priority_updated", data), {})
    assert (event.status, event.severity) == ("resolved", "warning")


def test_notes_and_service_events_give_no_event() -> None:
    assert parse(envelope("incident.annotated", {"type": "incident_note", "id": "N1"}), {}) == []
    assert parse(envelope("service.updated", {"id": "S1", "type": "service"}), {}) == []


def test_it_names_a_missing_incident_id() -> None:
    with pytest.raises(AdapterError, match=r"event\.data\.id: field required"):
        parse(envelope("incident.triggered", {"type": "incident", "status": "triggered"}), {})


# --- signatures -------------------------------------------------------------------------
# PagerDuty's own published test vector (go-pagerduty webhookv3_test.go): secret, body and
# the signature PagerDuty computes for them.
VECTOR_SECRET = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK"
VECTOR_BODY = (
    b'{"event":{"id":"01BWDWL3NYY7LUFPZCC28QUCMK","event_type":"incident.priority_updated",'
    b'"resource_type":"incident","occurred_at":"2021-04-26T17:36:27.458Z","agent":{"html_url":'
    b'"https://acme.pagerduty.com/users/PLH1HKV","id":"PLH1HKV","self":"https://api.pagerduty.'
    b'com/users/PLH1HKV","summary":"Tenex Engineer","type":"user_reference"},"client":null,'
    b'"data":{"id":"PGR0VU2","type":"incident","self":"https://api.pagerduty.com/incidents/'
    b'PGR0VU2","html_url":"https://acme.pagerduty.com/incidents/PGR0VU2","number":2,"status":'
    b'"triggered","title":"A little bump in the road","service":{"html_url":"https://acme.'
    b'pagerduty.com/services/PF9KMXH","id":"PF9KMXH","self":"https://api.pagerduty.com/'
    b'services/PF9KMXH","summary":"API Service","type":"service_reference"},"assignees":'
    b'[{"html_url":"https://acme.pagerduty.com/users/PTUXL6G","id":"PTUXL6G","self":"https:'
    b'//api.pagerduty.com/users/PTUXL6G","summary":"User 123","type":"user_reference"}],'
    b'"escalation_policy":{"html_url":"https://acme.pagerduty.com/escalation_policies/PUS0KTE",'
    b'"id":"PUS0KTE","self":"https://api.pagerduty.com/escalation_policies/PUS0KTE","summary":'
    b'"Default","type":"escalation_policy_reference"},"teams":[{"html_url":"https://acme.'
    b'pagerduty.com/teams/PFCVPS0","id":"PFCVPS0","self":"https://api.pagerduty.com/teams/'
    b'PFCVPS0","summary":"Engineering","type":"team_reference"}],"priority":{"html_url":'
    b'"https://acme.pagerduty.com/account/incident_priorities","id":"PSO75BM","self":"https:'
    b'//api.pagerduty.com/priorities/PSO75BM","summary":"P1","type":"priority_reference"},'
    b'"urgency":"high","conference_bridge":{"conference_number":1000,"conference_url":'
    b'"https://example.com"},"resolve_reason":null}}}'
)
VECTOR_VALID = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd"
VECTOR_MISMATCH = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5"


def signed(signature: str | None, body: bytes = VECTOR_BODY) -> Delivery:
    headers = {} if signature is None else {"x-pagerduty-signature": signature}
    return Delivery(body=body, received_at=RECEIVED, headers=headers)


def test_it_accepts_pagerdutys_published_valid_signature() -> None:
    verify(signed(VECTOR_VALID), VECTOR_SECRET, {}, RECEIVED)


def test_it_rejects_pagerdutys_published_mismatching_signature() -> None:
    with pytest.raises(SignatureError, match="no signature in X-PagerDuty-Signature matches"):
        verify(signed(VECTOR_MISMATCH), VECTOR_SECRET, {}, RECEIVED)


def test_it_rejects_a_missing_signature_header() -> None:
    for header in (None, "", "  "):
        with pytest.raises(SignatureError, match="missing signature header X-PagerDuty-Signature"):
            verify(signed(header), VECTOR_SECRET, {}, RECEIVED)


def test_it_rejects_a_malformed_signature_header() -> None:
    for header in (
        "sha256=abc",
        "v1=",
        "0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd",
    ):
        with pytest.raises(SignatureError, match=r"expected v1=<hex>"):
            verify(signed(header), VECTOR_SECRET, {}, RECEIVED)


def test_it_accepts_any_of_several_signatures_during_secret_rotation() -> None:
    verify(signed(f"{VECTOR_MISMATCH}, {VECTOR_VALID}"), VECTOR_SECRET, {}, RECEIVED)


def test_it_rejects_a_valid_signature_over_a_changed_body() -> None:
    with pytest.raises(SignatureError):
        verify(signed(VECTOR_VALID, VECTOR_BODY.replace(b"P1", b"P5")), VECTOR_SECRET, {}, RECEIVED)


def test_it_verifies_with_any_secret_the_standard_way() -> None:
    body = b'{"event":{"event_type":"pagey.ping"}}'
    digest = hmac.new(b"other secret", body, hashlib.sha256).hexdigest()
    verify(signed(f"v1={digest}", body), "other secret", {}, RECEIVED)
    with pytest.raises(SignatureError):
        verify(signed("v1=" + "é" * 64, body), "other secret", {}, RECEIVED)
