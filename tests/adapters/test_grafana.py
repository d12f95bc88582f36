"""Grafana unified and legacy alerting: fixtures, test notifications and HMAC signatures."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import orjson
import pytest

from adapters.alert_sources import AdapterError, Delivery, SignatureError
from adapters.alert_sources.grafana import Settings, parse, verify
from tests.adapters import RECEIVED, Ev, Expect, check_fixture, parse_fixture

TEST_ALERT = {"alertname": "Test alert", "test": "true"}
RABBIT = {"alertname": "Test alert", "deploy": "prod", "job": "rabbitmq", "test": "true"}


def rabbit(host: str, fingerprint: str) -> Ev:
    return Ev(
        status="resolved",
        dedup_key=f"1:{fingerprint}",
        severity="critical",
        summary=f"This is a summary field, failure on {host}",
        labels={
            **RABBIT,
            "instance": host,
            "annotation.description": "This is a description",
            "annotation.runbook_url": "https://example.com/",
            "annotation.summary": f"This is a summary field, failure on {host}",
            "grafana_rule_uid": "zTjxv_C7k",
            "grafana_org_id": "1",
        },
        occurred_at="2022-06-17T01:08:28.652747Z",  # endsAt, nanoseconds cut to micro
    )


def nodata(rule: str, uid: str, fingerprint: str, starts: str, panel: int) -> Ev:
    return Ev(
        status="firing",
        dedup_key=f"1:{fingerprint}",
        severity="critical",
        summary="DatasourceNoData",
        labels={
            "alertname": "DatasourceNoData",
            "datasource_uid": "Cbx8lpynz",
            "ref_id": "A",
            "rulename": rule,
            "grafana_rule_uid": uid,
            "grafana_org_id": "1",
        },
        occurred_at=starts,
        links=[
            f"https://example.com/alerting/grafana/{uid}/view",
            "https://example.com/d/_jnfQ-8nk",
            f"https://example.com/d/_jnfQ-8nk?viewPanel={panel}",
        ],
    )


def docs_alert(name: str, zone: str, uid: str, fingerprint: str, starts: str, what: str) -> Ev:
    return Ev(
        status="firing",
        dedup_key=f"1:{fingerprint}",
        severity="critical",
        summary=f"This alert was triggered for zone {zone}",
        labels={
            "alertname": name,
            "team": "blue",
            "zone": zone,
            "annotation.description": f"The system has {what}",
            "annotation.runbook_url": "https://myrunbook.com/runbook/1234",
            "annotation.summary": f"This alert was triggered for zone {zone}",
            "grafana_rule_uid": uid,
            "grafana_org_id": "1",
        },
        occurred_at=starts,
        links=[f"https://play.grafana.org/alerting/{uid}/edit"],
    )


LEGACY = {
    "alertname": "Test rule",
    "grafana_rule_id": "0",
    "grafana_dashboard_id": "1",
    "grafana_panel_id": "1",
    "grafana_org_id": "0",
}

EXPECTATIONS: dict[str, Expect] = {
    "grafana/firing_grouped_docs_example.json": Expect(
        events=[
            docs_alert(
                "High memory usage",
                "us-1",
                "1afz29v7z",
                "c6eadffa33fcdf37",
                "2021-10-12T09:51:03.157076+02:00",
                "high memory usage",
            ),
            docs_alert(
                "High CPU usage",
                "eu-1",
                "d1rdpdv7k",
                "bc97ff14869b13e3",
                "2021-10-12T09:56:03.157076+02:00",
                "high CPU usage",
            ),
        ]
    ),
    "grafana/firing_integration_test_expected.json": Expect(
        events=[
            Ev(
                status="firing",
                dedup_key="1:15c59b0a380bd9f1",
                severity="critical",
                summary="WebhookAlert",  # no annotations: the alert's name
                labels={
                    "alertname": "WebhookAlert",
                    "grafana_folder": "default",
                    "grafana_rule_uid": "UID_WebhookAlert",
                    "grafana_org_id": "1",
                },
                occurred_at="2024-01-01T00:00:00Z",
            )
        ]
    ),
    "grafana/firing_nodata_grouped_v9.json": Expect(
        events=[
            nodata(
                "battery charge", "3HwbuaU7z", "583e2e8d8fdc7002", "2022-07-19T06:07:07+02:00", 2
            ),
            nodata("UPS status", "IA_dr-8nz", "9467ea41a4343aad", "2022-07-19T14:37:07+02:00", 12),
        ]
    ),
    "grafana/firing_single_v9.json": Expect(
        events=[
            Ev(
                status="firing",
                dedup_key="1:d8a21484c9c25a60",
                severity="critical",
                summary="This is a summary field, failure on some_host",
                labels={
                    **TEST_ALERT,
                    "annotation.description": "This is a description",
                    "annotation.runbook_url": "https://runbook.example.com/",
                    "annotation.summary": "This is a summary field, failure on some_host",
                    "grafana_rule_uid": "zTjxv_C7k",
                    "grafana_org_id": "1",
                },
                occurred_at="2022-06-17T00:41:00.782137Z",
            )
        ]
    ),
    "grafana/firing_values_v11.json": Expect(
        events=[
            Ev(
                status="firing",
                dedup_key="1:e6349a25f5ef0e9e",
                severity="critical",
                summary="High memory usage",
                labels={
                    "alertname": "Memory (copy)",
                    "debug": "true",
                    "grafana_folder": "device",
                    "annotation.summary": "High memory usage",
                    "grafana_rule_uid": "dd2f0260-3cfc-4c65-a4c4-f3f632c551f4",
                    "grafana_org_id": "1",
                },
                occurred_at="2024-03-01T02:09:00Z",
            )
        ]
    ),
    # The legacy Test button: rule id 0, "Test notification".
    "grafana/legacy_pre8_alerting.json": Expect(
        events=[
            Ev(
                status="firing",
                dedup_key="legacy:0:1:1:0",
                severity="critical",
                summary="[Alerting] Test notification",
                labels=LEGACY,
                occurred_at="received",  # the legacy body has no time
                test=True,
                links=["http://localhost:3000/"],
            )
        ]
    ),
    "grafana/legacy_pre8_ok.json": Expect(
        events=[
            Ev(
                status="resolved",
                dedup_key="legacy:0:1:1:0",
                severity="critical",
                summary="[Ok] Test notification",
                labels=LEGACY,
                occurred_at="received",
                test=True,
            )
        ]
    ),
    "grafana/mixed_firing_and_resolved_v9.json": Expect(
        events=[
            rabbit("badhost.example.com", "aaafafe0953f0962"),
            rabbit("otherhost.example.com", "fb31814ac93dbe7d"),
            Ev(
                status="firing",
                dedup_key="1:6f9cd313db421ef1",
                severity="critical",
                summary="Testing **another** failing alert",
                labels={
                    "alertname": "Second webhook test",
                    "test": "true",
                    "annotation.description": "Description **here**",
                    "annotation.runbook_url": "https://example.com/",
                    "annotation.summary": "Testing **another** failing alert",
                    "grafana_rule_uid": "_0rkK_C7z",
                    "grafana_org_id": "1",
                },
                occurred_at="2022-06-17T01:03:00.782137Z",
            ),
        ]
    ),
    "grafana/resolved_single_v9.json": Expect(
        events=[
            Ev(
                status="resolved",
                dedup_key="1:d8a21484c9c25a60",
                severity="critical",
                summary="This is a summary field, failure on <no value>",
                labels={
                    **TEST_ALERT,
                    "annotation.description": "This is a description",
                    "annotation.runbook_url": "https://example.com/",
                    "annotation.summary": "This is a summary field, failure on <no value>",
                    "grafana_rule_uid": "zTjxv_C7k",
                    "grafana_org_id": "1",
                },
                occurred_at="2022-06-17T00:51:24.067337Z",
            )
        ]
    ),
    "grafana/test_notification_v8.json": Expect(
        events=[
            Ev(
                status="firing",
                dedup_key="1:57c6d9296de2ad39",
                severity="critical",
                summary="Notification test",
                labels={
                    "alertname": "TestAlert",
                    "instance": "Grafana",
                    "annotation.summary": "Notification test",
                    "grafana_org_id": "1",
                },
                occurred_at="2022-04-05T22:16:47.085355+02:00",
                test=True,
                links=[],
            )
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_in_its_meta(name: str) -> None:
    check_fixture("grafana", name, EXPECTATIONS[name])


@pytest.mark.parametrize(
    ("firing", "resolved"),
    [
        ("grafana/firing_single_v9.json", "grafana/resolved_single_v9.json"),
        ("grafana/legacy_pre8_alerting.json", "grafana/legacy_pre8_ok.json"),
    ],
)
def test_firing_and_resolved_of_one_alert_share_the_dedup_key(firing: str, resolved: str) -> None:
    (fire,) = parse_fixture("grafana", firing, Expect())
    (end,) = parse_fixture("grafana", resolved, Expect())
    assert (fire.status, end.status) == ("firing", "resolved")
    assert fire.dedup_key == end.dedup_key


def test_it_refuses_an_unknown_legacy_state_naming_the_known_ones() -> None:
    body = orjson.dumps({"state": "exploded", "ruleId": 3})
    with pytest.raises(AdapterError, match="state: expected one of alerting, no_data, ok"):
        parse(Delivery(body=body, received_at=RECEIVED), {})


def test_it_acknowledges_paused_legacy_rules_without_an_event() -> None:
    body = orjson.dumps({"state": "paused", "ruleId": 3})
    assert parse(Delivery(body=body, received_at=RECEIVED), {}) == []


# --- signatures -------------------------------------------------------------------------

SECRET = "s3cret"
BODY = b'{"receiver":"x","status":"firing","alerts":[]}'
NOW = RECEIVED


def sign(message: bytes, secret: str = SECRET) -> str:
    """The scheme of Grafana's hmacConfig, computed here with the standard library."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def delivery(headers: dict[str, str], body: bytes = BODY) -> Delivery:
    return Delivery(body=body, received_at=RECEIVED, headers=headers)


def test_it_accepts_a_valid_signature_without_timestamp() -> None:
    verify(delivery({"x-grafana-alerting-signature": sign(BODY)}), SECRET, {}, NOW)


def test_it_rejects_an_invalid_signature() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(delivery({"x-grafana-alerting-signature": sign(BODY, "other")}), SECRET, {}, NOW)


def test_it_rejects_a_signature_of_a_changed_body() -> None:
    headers = {"x-grafana-alerting-signature": sign(BODY)}
    with pytest.raises(SignatureError):
        verify(delivery(headers, body=BODY + b" "), SECRET, {}, NOW)


def test_it_rejects_a_missing_signature() -> None:
    with pytest.raises(
        SignatureError, match="missing signature header X-Grafana-Alerting-Signature"
    ):
        verify(delivery({}), SECRET, {}, NOW)


def test_it_reads_the_signature_from_a_configured_header() -> None:
    settings = {"signature_header": "X-Sig"}
    verify(delivery({"x-sig": sign(BODY)}), SECRET, settings, NOW)


TS_SETTINGS = {"timestamp_header": "X-Grafana-Alerting-Timestamp"}


def test_it_accepts_a_fresh_timestamped_signature() -> None:
    ts = str(int(NOW.timestamp()) - 30)
    headers = {
        "x-grafana-alerting-timestamp": ts,
        "x-grafana-alerting-signature": sign(ts.encode() + b":" + BODY),
    }
    verify(delivery(headers), SECRET, TS_SETTINGS, NOW)


def test_it_rejects_a_stale_timestamp_even_with_a_valid_signature() -> None:
    ts = str(int((NOW - timedelta(minutes=10)).timestamp()))
    headers = {
        "x-grafana-alerting-timestamp": ts,
        "x-grafana-alerting-signature": sign(ts.encode() + b":" + BODY),
    }
    with pytest.raises(SignatureError, match="stale or replayed"):
        verify(delivery(headers), SECRET, TS_SETTINGS, NOW)


def test_it_rejects_a_signature_that_leaves_the_timestamp_out() -> None:
    ts = str(int(NOW.timestamp()))
    headers = {"x-grafana-alerting-timestamp": ts, "x-grafana-alerting-signature": sign(BODY)}
    with pytest.raises(SignatureError, match="does not match"):
        verify(delivery(headers), SECRET, TS_SETTINGS, NOW)


def test_it_rejects_a_missing_or_malformed_timestamp() -> None:
    signed = {"x-grafana-alerting-signature": sign(BODY)}
    with pytest.raises(SignatureError, match="missing timestamp header"):
        verify(delivery(signed), SECRET, TS_SETTINGS, NOW)
    with pytest.raises(SignatureError, match="expected Unix seconds"):
        verify(
            delivery({**signed, "x-grafana-alerting-timestamp": "yesterday"}),
            SECRET,
            TS_SETTINGS,
            NOW,
        )


def test_it_answers_non_ascii_signature_headers_with_a_signature_error() -> None:
    with pytest.raises(SignatureError):
        verify(delivery({"x-grafana-alerting-signature": "é" * 64}), SECRET, {}, NOW)


def test_its_settings_forbid_unknown_keys() -> None:
    with pytest.raises(ValueError, match="timestamp_heder"):
        Settings.model_validate({"timestamp_heder": "X-Ts"})


def test_a_legacy_alert_of_a_real_rule_is_not_a_test() -> None:
    body = orjson.dumps({"state": "alerting", "ruleId": 7, "ruleName": "CPU", "orgId": 1})
    (event,) = parse(Delivery(body=body, received_at=RECEIVED), {})
    assert (event.test, event.dedup_key, event.labels["alertname"]) == (
        False,
        "legacy:1:0:0:7",
        "CPU",
    )
