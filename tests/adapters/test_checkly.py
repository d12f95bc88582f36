"""Checkly webhooks: hand-written fixture expectations, the template refused, signatures."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings

from adapters.alert_sources import Delivery, SignatureError
from adapters.alert_sources.checkly import Settings, parse, verify
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

RECOVERY = "checkly/recovery_rendered_keep.json"
CHECK_ID = "927a2982-1007-4b81-b383-eae8bf717e61"

EXPECTATIONS: dict[str, Expectation] = {
    RECOVERY: [
        Event(
            status="resolved",
            dedup_key=f"check:{CHECK_ID}",
            severity="critical",
            summary="API Check #1 has recovered",
            occurred_at=datetime(2025, 1, 26, 11, 19, 40, 544000, tzinfo=UTC),
            labels={
                "alert_type": "ALERT_RECOVERY",
                "check_id": CHECK_ID,
                "check_name": "API Check #1",
                "check_type": "API",
                "run_location": "Singapore",
                "response_time": "258",
                "status_code": "200",
                "status_text": "OK",
            },
            delivery_id="4583208e-0bca-48c6-8dc8-d14faf6102b3",
            links=[
                f"https://app.checklyhq.com/checks/{CHECK_ID}/check-sessions/"
                "478cacb1-c40f-4675-89d7-a4e3ecaafb7b"
            ],
        )
    ],
    "checkly/template_keep_all_fields.txt": Raises(
        "alert_type: unrendered placeholder {{ALERT_TYPE}}: this is the template"
    ),
}


def test_every_checkly_fixture_has_expectations() -> None:
    assert payload_files("checkly") == set(EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_by_hand(name: str) -> None:
    check(parse, load_delivery(name), EXPECTATIONS[name])


def _as(alert_type: str, **changes: object) -> Delivery:
    document = orjson.loads(load_delivery(RECOVERY).body)
    document.update(alert_type=alert_type, **changes)
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT)


def test_failure_and_recovery_share_the_dedup_key() -> None:
    failure = parse(_as("ALERT_FAILURE", check_error_message="HTTP 500"), {})[0]
    recovery = parse(load_delivery(RECOVERY), {})[0]
    assert (failure.status, failure.severity) == ("firing", "critical")
    assert failure.summary == "API Check #1 has recovered: HTTP 500"
    assert failure.dedup_key == recovery.dedup_key


def test_degraded_is_a_separate_warning_that_its_own_recovery_ends() -> None:
    degraded = parse(_as("ALERT_DEGRADED"), {})[0]
    recovered = parse(_as("ALERT_DEGRADED_RECOVERY"), {})[0]
    assert (degraded.status, degraded.severity) == ("firing", "warning")
    assert recovered.status == "resolved"
    assert degraded.dedup_key == recovered.dedup_key == f"check:{CHECK_ID}:degraded"


def test_braces_in_an_error_message_are_not_taken_for_a_template() -> None:
    failure = parse(_as("ALERT_FAILURE", check_error_message="expected {{name}} in page"), {})[0]
    assert failure.details == "expected {{name}} in page"


def test_unknown_alert_type_is_refused() -> None:
    check(parse, _as("ALERT_PANIC"), Raises("alert_type: expected one of"))


SECRET = "checkly-webhook-secret"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _signed(body: bytes, *, secret: str = SECRET, stamp: str | None = None) -> Delivery:
    headers = {"x-checkly-signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if stamp is not None:
        headers["x-checkly-timestamp"] = stamp
    return Delivery(body=body, received_at=RECEIVED_AT, headers=headers)


def test_a_valid_signature_passes() -> None:
    body = load_delivery(RECOVERY).body
    verify(_signed(body, stamp=str(int(NOW.timestamp() * 1000))), SECRET, {}, NOW)
    verify(_signed(body), SECRET, {}, NOW)  # the timestamp header is optional


def test_a_signature_with_another_secret_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(_signed(b"{}", secret="other"), SECRET, {}, NOW)


def test_a_changed_body_fails() -> None:
    delivery = _signed(b'{"a": 1}')
    tampered = Delivery(body=b'{"a": 2}', received_at=RECEIVED_AT, headers=delivery.headers)
    with pytest.raises(SignatureError, match="does not match"):
        verify(tampered, SECRET, {}, NOW)


def test_a_signature_with_non_ascii_characters_fails_instead_of_crashing() -> None:
    delivery = Delivery(
        body=b"{}", received_at=RECEIVED_AT, headers={"x-checkly-signature": "é" * 64}
    )
    with pytest.raises(SignatureError, match="does not match"):
        verify(delivery, SECRET, {}, NOW)


def test_a_missing_signature_fails() -> None:
    with pytest.raises(SignatureError, match="missing signature header x-checkly-signature"):
        verify(Delivery(body=b"{}", received_at=RECEIVED_AT), SECRET, {}, NOW)


def test_a_stale_timestamp_fails() -> None:
    stale = str(int((NOW - timedelta(minutes=10)).timestamp()))
    with pytest.raises(SignatureError, match="stale or replayed"):
        verify(_signed(b"{}", stamp=stale), SECRET, {}, NOW)
    verify(_signed(b"{}", stamp=stale), SECRET, {"max_timestamp_skew_seconds": 900}, NOW)


def test_an_unreadable_timestamp_fails() -> None:
    with pytest.raises(SignatureError, match="x-checkly-timestamp"):
        verify(_signed(b"{}", stamp="soon"), SECRET, {}, NOW)


def test_settings_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        Settings.model_validate({"max_skew": 5})


@settings(max_examples=150, deadline=None)
@given(body=bodies("checkly"))
def test_random_bodies_give_events_or_adapter_errors(body: bytes) -> None:
    only_events_or_adapter_errors(parse, Delivery(body=body, received_at=RECEIVED_AT))
