"""Alertmanager webhook v4: every fixture against expectations written from its meta."""

from __future__ import annotations

import hashlib
import json

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery
from adapters.alert_sources.alertmanager import parse
from tests.adapters import RECEIVED, Ev, Expect, check_fixture, parse_fixture


def labels_key(labels: dict[str, str]) -> str:
    """The documented fallback key, computed here independently of the adapter."""
    text = json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "labels:" + hashlib.sha256(text.encode()).hexdigest()[:16]


FIRE_LABELS = {"alertname": "Fire", "severity": "critical"}
ICMP = {
    "alertname": "ICMP ping failed",
    "job": "blackbox-icmp",
    "monitor": "monis",
    "severity": "major",
    "tags": "icmp, ping failed",
}


def icmp(ip: str) -> Ev:
    labels = {**ICMP, "instance": ip, "summary": f"No physical connection to {ip}"}
    return Ev(
        status="firing",
        dedup_key=labels_key(labels),
        severity="high",  # "major" is the high level of the shared word table
        summary=f"No physical connection to {ip}",  # the summary label beats the description
        labels={**labels, "annotation.description": f"{ip} does not reply to ICMP pings"},
        occurred_at="2019-09-27T16:27:56.612666Z",
    )


DEPLOYMENT = {
    "alertname": "Deployment",
    "app_kubernetes_io_instance": "eric-oss-common-base",
    "app_kubernetes_io_managed_by": "Helm",
    "app_kubernetes_io_name": "eric-pm-kube-state-metrics",
    "app_kubernetes_io_version": "2.1.0_10",
    "chart": "eric-pm-kube-state-metrics-2.1.0_10",
    "deployment": "eric-log-transformer",
    "instance": "192.168.69.53:8080",
    "job": "eric-pm-kube-state-metrics",
    "kubernetes_name": "eric-pm-kube-state-metrics",
    "kubernetes_namespace": "eric-eo-cm-ci406",
    "namespace": "eric-eo-cm-ci406",
    "severity": "Warning",
}

EXPECTATIONS: dict[str, Expect] = {
    # Annotated pseudo-JSON from the docs, not a delivery: unreadable, a clear 400.
    "alertmanager/docs_schema_v4.txt": Expect(error="body is not valid JSON"),
    "alertmanager/firing_grouped_nested_route.json": Expect(
        events=[icmp("172.29.254.30"), icmp("172.29.254.50"), icmp("172.29.254.66")]
    ),
    "alertmanager/firing_grouped_with_fingerprint.json": Expect(
        events=[
            Ev(
                status="firing",
                dedup_key="848d4fa77803ce9d",
                severity="critical",  # no severity label
                summary="InstanceDown",
                labels={
                    "alertname": "InstanceDown",
                    "instance": "idonotexists:564",
                    "job": "services",
                },
                occurred_at="2021-02-15T08:35:16.877347Z",
            ),
            Ev(
                status="firing",
                dedup_key="e4a26b1cdb7fcfe4",
                severity="critical",
                summary="Mere end 3 langsomme requests seneste time",
                labels={
                    "alertname": "SlowResponse2",
                    "severity": "critical",
                    "annotation.description": ".....",
                    "annotation.summary": "Mere end 3 langsomme requests seneste time",
                },
                occurred_at="2021-02-15T09:31:16.877347Z",
            ),
        ]
    ),
    "alertmanager/firing_single.json": Expect(
        events=[
            Ev(
                status="firing",
                dedup_key=labels_key(FIRE_LABELS),
                severity="critical",
                summary="Something is on fire",
                labels={**FIRE_LABELS, "annotation.message": "Something is on fire"},
                # startsAt, not the (old-version) future endsAt of a firing alert
                occurred_at="2018-11-04T22:43:58.283995+01:00",
                links=["http://localhost:9090/graph?g0.expr=vector%28666%29&g0.tab=1"],
            )
        ]
    ),
    "alertmanager/resolved_single.json": Expect(
        events=[
            Ev(
                status="resolved",
                dedup_key=labels_key(FIRE_LABELS),
                severity="critical",
                summary="Something is on fire",
                labels={**FIRE_LABELS, "annotation.message": "Something is on fire"},
                occurred_at="2018-11-04T22:48:13.283995+01:00",  # endsAt
            )
        ]
    ),
    "alertmanager/resolved_v0_32plus_notification_reason.json": Expect(
        events=[
            Ev(
                status="resolved",
                dedup_key="1c90b4a513296c21",
                severity="critical",
                summary="Target 19 has failed repeatedly in the last 5 minutes",
                labels={
                    "alertname": "TargetDown",
                    "error_class": "ConnectError",
                    "instance": "app:8000",
                    "job": "synthetic-uptime-monitor",
                    "severity": "critical",
                    "status": "error",
                    "target_id": "19",
                    "annotation.summary": "Target 19 has failed repeatedly in the last 5 minutes",
                },
                occurred_at="2026-08-07T07:36:13.599Z",
            )
        ]
    ),
    "alertmanager/resolved_with_fingerprint.json": Expect(
        events=[
            Ev(
                status="resolved",
                dedup_key="fbab788ec4c1018b",
                severity="warning",  # "Warning": case does not matter
                summary="Kubernetes Deployment Replicas Mismatch",
                labels={
                    **DEPLOYMENT,
                    "annotation.description": (
                        "Deployment Replicas mismatch, desired value does not match.."
                    ),
                    "annotation.summary": "Kubernetes Deployment Replicas Mismatch",
                },
                occurred_at="2022-07-29T11:17:27.3Z",
            )
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("alertmanager", name, EXPECTATIONS[name])


def test_firing_and_resolved_of_one_alert_share_the_dedup_key() -> None:
    firing = parse_fixture("alertmanager", "alertmanager/firing_single.json", Expect())
    resolved = parse_fixture("alertmanager", "alertmanager/resolved_single.json", Expect())
    assert firing[0].dedup_key == resolved[0].dedup_key


def _delivery(document: object) -> Delivery:
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED)


def _alert(**overrides: object) -> dict[str, object]:
    alert: dict[str, object] = {
        "status": "firing",
        "labels": {"alertname": "Disk", "severity": "warning"},
        "annotations": {},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "abc",
    }
    alert.update(overrides)
    return alert


def test_it_uses_each_alerts_own_status_in_a_mixed_group() -> None:
    resolved = _alert(status="resolved", fingerprint="def", endsAt="2026-01-01T00:05:00Z")
    events = parse(_delivery({"status": "firing", "alerts": [_alert(), resolved]}), {})
    assert [(e.dedup_key, e.status) for e in events] == [("abc", "firing"), ("def", "resolved")]


def test_it_takes_a_resolve_without_end_time_at_the_delivery_time() -> None:
    (event,) = parse(_delivery({"alerts": [_alert(status="resolved")]}), {})
    assert event.occurred_at == RECEIVED


def test_it_names_the_alert_and_field_of_a_bad_status() -> None:
    with pytest.raises(AdapterError) as caught:
        parse(_delivery({"alerts": [_alert(), _alert(status="bogus")]}), {})
    message = str(caught.value)
    assert message.startswith("alerts[1].status:")
    assert "'bogus'" in message and "Alertmanager webhook v4" in message


def test_it_refuses_a_body_without_alerts() -> None:
    with pytest.raises(AdapterError, match="alerts: field required"):
        parse(_delivery({"status": "firing"}), {})


def test_it_refuses_non_string_label_values_with_their_path() -> None:
    with pytest.raises(AdapterError, match=r"alerts\[0\]\.labels\.severity"):
        parse(_delivery({"alerts": [_alert(labels={"severity": 3})]}), {})


def test_it_never_mutates_the_delivery_body() -> None:
    document = {"alerts": [_alert()]}
    body = orjson.dumps(document)
    delivery = Delivery(body=body, received_at=RECEIVED)
    (event,) = parse(delivery, {})
    assert delivery.body == body
    assert event.raw == document["alerts"][0]


def test_an_over_long_fingerprint_still_gives_a_valid_distinct_key() -> None:
    one = _alert(fingerprint="f" * 600 + "1")
    two = _alert(fingerprint="f" * 600 + "2")
    first, second = parse(_delivery({"alerts": [one, two]}), {})
    assert len(first.dedup_key) <= 512
    assert first.dedup_key != second.dedup_key
    assert first.dedup_key.startswith("f" * 480)


@pytest.mark.parametrize(
    ("document", "wrong"),
    [
        ({"alerts": "none"}, "alerts: input should be a valid list"),
        ({"alerts": [_alert(), "x"]}, r"alerts\[1\]: input should be a valid dictionary"),
        ({"alerts": [_alert()], "receiver": 7}, "receiver: input should be a valid string"),
        ({"alerts": [_alert()], "groupKey": None}, "groupKey: input should be a valid string"),
        ({"alerts": [_alert()], "externalURL": []}, "externalURL: input should be a valid string"),
    ],
)
def test_a_message_not_of_alertmanagers_shape_is_refused_by_the_field(
    document: dict[str, object], wrong: str
) -> None:
    # The plain shape skips the message's validation (the intake's busiest path); any
    # other still meets it, with the field named.
    with pytest.raises(AdapterError, match=wrong):
        parse(_delivery(document), {})
