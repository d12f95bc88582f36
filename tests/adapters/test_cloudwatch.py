"""CloudWatch via SNS: hand-written fixture expectations, raw delivery, SNS signatures.

The signature tests sign with a root, an intermediate and an SNS-named leaf made by
`tests.support.LocalCA`, the root used as the trust anchor: no AWS message comes with the
key that signed it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given, settings

from adapters.alert_sources import Delivery, SignatureError
from adapters.alert_sources.cloudwatch import (
    Settings,
    TrustSettings,
    canonical_string,
    parse,
    signing_cert_url,
    subscription_confirm_url,
    verify_signature,
)
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
from tests.support import FakeSNS, LocalCA, pem

D = "aws-cloudwatch-sns"
REASON_2015 = (
    "Threshold Crossed: 1 datapoint (2024818.75) was greater than or equal to the "
    "threshold (2000000.0)."
)
LABELS_2015 = {
    "alarm_name": "api-1 - Network In",
    "account_id": "863886017929",
    "region": "APAC - Tokyo",
    "new_state": "ALARM",
    "old_state": "OK",
    "metric_name": "NetworkIn",
    "namespace": "AWS/EC2",
    "statistic": "AVERAGE",
    "comparison_operator": "GreaterThanOrEqualToThreshold",
    "threshold": "2000000.0",
    "dimension.InstanceId": "i-bc8dcaa5",
}
ARN_2021 = "arn:aws:cloudwatch:ap-northeast-1:257706363616:alarm:ec2CPUUtilization"
REASON_2021 = (
    "Threshold Crossed: 1 out of the last 1 datapoints [5.477211732525876 (18/06/21 04:23:00)] "
    "was not greater than the threshold (5.5) (minimum 1 datapoint for ALARM -> OK transition)."
)
LABELS_2021 = {
    "alarm_name": "ec2CPUUtilization",
    "alarm_arn": ARN_2021,
    "account_id": "257706363616",
    "region": "Asia Pacific (Tokyo)",
    "new_state": "OK",
    "old_state": "ALARM",
    "metric_name": "CPUUtilization",
    "namespace": "AWS/EC2",
    "statistic": "AVERAGE",
    "comparison_operator": "GreaterThanThreshold",
    "threshold": "5.5",
    "dimension.AutoScalingGroupName": "eks-6ebcce7e-400b-8a69-f0e9-d9e14bb635d2",
}
CONSOLE_2021 = [
    "https://console.aws.amazon.com/cloudwatch/home?region=ap-northeast-1"
    "#alarmsV2:alarm/ec2CPUUtilization"
]
DOCS_TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
TOPIC_2015 = "arn:aws:sns:ap-northeast-1:863886017929:developers"

EXPECTATIONS: dict[str, Expectation] = {
    # Raw message delivery: the body is the alarm itself, no envelope, no delivery id.
    f"{D}/alarm_message_decoded_2015.json": [
        Event(
            status="firing",
            dedup_key="alarm:863886017929:APAC - Tokyo:api-1 - Network In",
            severity="critical",
            summary=f"api-1 - Network In: {REASON_2015}",
            occurred_at=datetime(2015, 12, 4, 7, 22, 14, 394000, tzinfo=UTC),
            labels=LABELS_2015,
            links=[],
        )
    ],
    f"{D}/alarm_notification_real_2015.json": [
        Event(
            status="firing",
            dedup_key="alarm:863886017929:APAC - Tokyo:api-1 - Network In",
            severity="critical",
            summary=f"api-1 - Network In: {REASON_2015}",
            occurred_at=datetime(2015, 12, 4, 7, 22, 14, 394000, tzinfo=UTC),
            labels={**LABELS_2015, "topic_arn": TOPIC_2015},
            delivery_id="f1cd789a-df69-5dc4-bd54-36419e0f72c4",
        )
    ],
    f"{D}/ok_message_decoded_2021.json": [
        Event(
            status="resolved",
            dedup_key=ARN_2021,
            severity="critical",
            summary=f"ec2CPUUtilization: {REASON_2021}",
            occurred_at=datetime(2021, 6, 18, 4, 28, 21, 914000, tzinfo=UTC),
            labels=LABELS_2021,
            links=CONSOLE_2021,
        )
    ],
    f"{D}/ok_notification_real_2021.json": [
        Event(
            status="resolved",
            dedup_key=ARN_2021,
            severity="critical",
            summary=f"ec2CPUUtilization: {REASON_2021}",
            occurred_at=datetime(2021, 6, 18, 4, 28, 21, 914000, tzinfo=UTC),
            labels={
                **LABELS_2021,
                "topic_arn": "arn:aws:sns:ap-northeast-1:257706363616:aws-sns-topic",
            },
            delivery_id="d22096fc-c983-57a6-805d-cfbaeaa69dde",
            links=CONSOLE_2021,
        )
    ],
    # A message that is no alarm (the console's "Publish message"): acknowledged as a test.
    f"{D}/notification_docs_http.txt": [
        Event(
            status="firing",
            dedup_key=f"sns:Notification:{DOCS_TOPIC}",
            severity="info",
            summary="My First Message",
            occurred_at=datetime(2012, 5, 2, 0, 54, 6, 655000, tzinfo=UTC),
            labels={"sns_type": "Notification", "topic_arn": DOCS_TOPIC},
            test=True,
            delivery_id="22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        )
    ],
    f"{D}/subscription_confirmation_docs_http.txt": [
        Event(
            status="firing",
            dedup_key=f"sns:SubscriptionConfirmation:{DOCS_TOPIC}",
            severity="info",
            summary=f"SNS subscription confirmation for {DOCS_TOPIC}",
            occurred_at=datetime(2012, 4, 26, 20, 45, 4, 751000, tzinfo=UTC),
            labels={"sns_type": "SubscriptionConfirmation", "topic_arn": DOCS_TOPIC},
            test=True,
            delivery_id="165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        )
    ],
    f"{D}/subscription_confirmation_real_2015.json": [
        Event(
            status="firing",
            dedup_key=f"sns:SubscriptionConfirmation:{TOPIC_2015}",
            severity="info",
            summary=f"SNS subscription confirmation for {TOPIC_2015}",
            occurred_at=datetime(2015, 12, 6, 7, 13, 41, 370000, tzinfo=UTC),
            labels={"sns_type": "SubscriptionConfirmation", "topic_arn": TOPIC_2015},
            test=True,
            delivery_id="cb304f8d-740d-4810-b9dd-7d47a1184eb8",
        )
    ],
    f"{D}/unsubscribe_confirmation_docs_http.txt": [
        Event(
            status="firing",
            dedup_key=f"sns:UnsubscribeConfirmation:{DOCS_TOPIC}",
            severity="info",
            summary=f"SNS unsubscribe confirmation for {DOCS_TOPIC}",
            occurred_at=datetime(2012, 4, 26, 20, 6, 41, 581000, tzinfo=UTC),
            labels={"sns_type": "UnsubscribeConfirmation", "topic_arn": DOCS_TOPIC},
            test=True,
            delivery_id="47138184-6831-46b8-8f7c-afc488602d7d",
        )
    ],
}


def test_every_cloudwatch_fixture_has_expectations() -> None:
    assert payload_files(D) == set(EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_it_parses_each_fixture_as_written_by_hand(name: str) -> None:
    check(parse, load_delivery(name), EXPECTATIONS[name])


def _envelope(name: str) -> dict[str, Any]:
    return orjson.loads(load_delivery(name).body)


def _delivery(document: dict[str, Any], **headers: str) -> Delivery:
    return Delivery(body=orjson.dumps(document), received_at=RECEIVED_AT, headers=headers)


def _with_state(name: str, state: str) -> dict[str, Any]:
    document = _envelope(name)
    message = orjson.loads(document["Message"])
    message["NewStateValue"] = state
    document["Message"] = orjson.dumps(message).decode()
    return document


def test_alarm_and_ok_of_one_alarm_share_the_dedup_key() -> None:
    # The captured ALARM and OK are of different alarms; the same alarm keeps its key.
    ok = parse(load_delivery(f"{D}/ok_notification_real_2021.json"), {})[0]
    alarm = parse(_delivery(_with_state(f"{D}/ok_notification_real_2021.json", "ALARM")), {})[0]
    assert (alarm.status, ok.status) == ("firing", "resolved")
    assert alarm.dedup_key == ok.dedup_key


def test_raw_and_enveloped_deliveries_share_the_dedup_key() -> None:
    raw = parse(load_delivery(f"{D}/alarm_message_decoded_2015.json"), {})[0]
    enveloped = parse(load_delivery(f"{D}/alarm_notification_real_2015.json"), {})[0]
    assert raw.dedup_key == enveloped.dedup_key


@pytest.mark.parametrize(("setting", "expected"), [("ignore", None), ("firing", "firing")])
def test_insufficient_data_follows_the_setting(setting: str, expected: str | None) -> None:
    document = _with_state(f"{D}/ok_notification_real_2021.json", "INSUFFICIENT_DATA")
    events = parse(_delivery(document), {"insufficient_data": setting})
    assert [e.status for e in events] == ([expected] if expected else [])


def test_topics_outside_the_allow_list_are_refused() -> None:
    delivery = load_delivery(f"{D}/alarm_notification_real_2015.json")
    check(
        parse,
        delivery,
        Raises("TopicArn: 'arn:aws:sns:ap-northeast-1:863886017929:developers'"),
        {"topic_arns": ["arn:aws:sns:eu-west-1:1:other"]},
    )
    assert parse(delivery, {"topic_arns": [TOPIC_2015]})


@pytest.mark.parametrize(
    ("delivery", "message"),
    [
        (
            _delivery(_with_state(f"{D}/ok_notification_real_2021.json", "MELTED")),
            "Message.NewStateValue",
        ),
        (
            _delivery({**_envelope(f"{D}/ok_notification_real_2021.json"), "Type": "Bogus"}),
            "Type: expected",
        ),
        (
            _delivery(
                _envelope(f"{D}/ok_notification_real_2021.json"),
                **{"x-amz-sns-message-type": "SubscriptionConfirmation"},
            ),
            "differs from the x-amz-sns-message-type header",
        ),
        (
            _delivery({"AlarmName": "x", "NewStateValue": "ALARM"}),
            "StateChangeTime: field required",
        ),
        (_delivery({"Type": "Notification"}), "MessageId: field required"),
    ],
)
def test_it_names_the_wrong_field(delivery: Delivery, message: str) -> None:
    check(parse, delivery, Raises(message))


def test_settings_refuse_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        Settings.model_validate({"topics": []})


def test_which_hosts_are_sns_is_not_a_source_setting() -> None:
    # It decides where Beacon connects to: the operator's BEACON_SNS_HOST_PATTERN only.
    with pytest.raises(ValueError, match="extra"):
        Settings.model_validate({"sns_host_pattern": r"evil\.example"})


# --- URLs the intake may fetch ----------------------------------------------------------


def test_signing_cert_urls_must_be_https_on_an_sns_host() -> None:
    real = _envelope(f"{D}/alarm_notification_real_2015.json")
    assert signing_cert_url(real) == real["SigningCertURL"]
    china = {"SigningCertURL": "https://sns.cn-north-1.amazonaws.com.cn/cert.pem"}
    assert signing_cert_url(china) == china["SigningCertURL"]
    for url in [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
        "https://[sns.us-east-1.amazonaws.com/cert.pem",
        None,
    ]:
        with pytest.raises(SignatureError, match="SigningCertURL"):
            signing_cert_url({"SigningCertURL": url})


def test_a_test_host_pattern_lets_a_loopback_cert_url_through() -> None:
    envelope = {"SigningCertURL": "https://127.0.0.1:8443/SimpleNotificationService-test.pem"}
    with pytest.raises(SignatureError):
        signing_cert_url(envelope)
    allowed = signing_cert_url(envelope, host_pattern=r"127\.0\.0\.1")
    assert allowed == envelope["SigningCertURL"]


def test_only_subscription_confirmations_on_sns_hosts_give_a_confirm_url() -> None:
    confirmation = load_delivery(f"{D}/subscription_confirmation_real_2015.json")
    assert (
        subscription_confirm_url(confirmation)
        == _envelope(f"{D}/subscription_confirmation_real_2015.json")["SubscribeURL"]
    )
    evil = {
        **_envelope(f"{D}/subscription_confirmation_real_2015.json"),
        "SubscribeURL": "https://evil.example/",
    }
    assert subscription_confirm_url(_delivery(evil)) is None
    assert (
        subscription_confirm_url(load_delivery(f"{D}/unsubscribe_confirmation_docs_http.txt"))
        is None
    )
    assert subscription_confirm_url(load_delivery(f"{D}/alarm_notification_real_2015.json")) is None
    assert subscription_confirm_url(Delivery(body=b"garbage", received_at=RECEIVED_AT)) is None


# --- signatures -------------------------------------------------------------------------


def test_the_canonical_string_follows_the_documented_order() -> None:
    envelope = _envelope(f"{D}/notification_docs_http.txt")
    assert canonical_string(envelope) == (
        b"Message\nHello world!\n"
        b"MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        b"Subject\nMy First Message\n"
        b"Timestamp\n2012-05-02T00:54:06.655Z\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n"
        b"Type\nNotification\n"
    )
    confirmation = _envelope(f"{D}/subscription_confirmation_docs_http.txt")
    assert canonical_string(confirmation) == (
        b"Message\nYou have chosen to subscribe to the topic "
        b"arn:aws:sns:us-west-2:123456789012:MyTopic.\n"
        b"To confirm the subscription, visit the SubscribeURL included in this message.\n"
        b"MessageId\n165545c9-2a5c-472c-8df2-7ff2be2b3b1b\n"
        b"SubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription"
        b"&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37...\n"
        b"Timestamp\n2012-04-26T20:45:04.751Z\n"
        b"Token\n2336412f37...\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n"
        b"Type\nSubscriptionConfirmation\n"
    )


VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)
NOW = datetime(2021, 6, 18, 4, 30, tzinfo=UTC)  # two minutes after the 2021 notification


class _PKI:
    """A root CA, an intermediate and an SNS-named leaf, as SNS's chain is built."""

    def __init__(self, leaf_name: str = "sns.amazonaws.com") -> None:
        self.root = LocalCA("Beacon Test Root", valid_from=VALID_FROM, days=3650)
        self.inter = self.root.intermediate("Beacon Test Intermediate")
        self.leaf = self.inter.issue(leaf_name)

    def trust(self, **changes: Any) -> TrustSettings:
        return TrustSettings(
            anchors_pem=pem(self.root.cert), intermediates_pem=pem(self.inter.cert), **changes
        )

    def sign(self, envelope: dict[str, Any], version: str = "1") -> dict[str, Any]:
        # The canonical string, built here from AWS's documented field order.
        order = (
            ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
            if envelope["Type"] == "Notification"
            else ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        )
        text = "".join(f"{k}\n{envelope[k]}\n" for k in order if envelope.get(k) is not None)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.leaf.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {
            **envelope,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
        }


@pytest.fixture(scope="module")
def pki() -> _PKI:
    return _PKI()


OK_2021 = f"{D}/ok_notification_real_2021.json"


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_valid_signature_passes(pki: _PKI, version: str) -> None:
    verify_signature(pki.sign(_envelope(OK_2021), version), pem(pki.leaf.cert), pki.trust(), NOW)


def test_a_subscription_confirmation_signature_passes(pki: _PKI) -> None:
    envelope = _envelope(f"{D}/subscription_confirmation_real_2015.json")
    verify_signature(pki.sign(envelope), pem(pki.leaf.cert), pki.trust(max_age_seconds=None), NOW)


def test_the_chain_may_come_with_the_certificate(pki: _PKI) -> None:
    trust = TrustSettings(anchors_pem=pem(pki.root.cert))
    verify_signature(pki.sign(_envelope(OK_2021)), pem(pki.leaf.cert, pki.inter.cert), trust, NOW)


def test_a_changed_message_fails(pki: _PKI) -> None:
    signed = pki.sign(_envelope(OK_2021))
    signed["Message"] = signed["Message"].replace("OK", "ALARM")
    with pytest.raises(SignatureError, match="Signature: does not match"):
        verify_signature(signed, pem(pki.leaf.cert), pki.trust(), NOW)


def test_a_signature_of_the_other_version_fails(pki: _PKI) -> None:
    signed = {**pki.sign(_envelope(OK_2021), "1"), "SignatureVersion": "2"}
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(signed, pem(pki.leaf.cert), pki.trust(), NOW)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"Signature": None}, "Signature: missing"),
        ({"Signature": "not base64!"}, "Signature: not base64"),
        ({"SignatureVersion": None}, "SignatureVersion: expected '1' or '2'"),
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"TopicArn": None}, "TopicArn: missing"),
    ],
)
def test_a_missing_or_malformed_signature_fails(
    pki: _PKI, changes: dict[str, Any], message: str
) -> None:
    signed = {**pki.sign(_envelope(OK_2021)), **changes}
    with pytest.raises(SignatureError, match=message):
        verify_signature(signed, pem(pki.leaf.cert), pki.trust(), NOW)


def test_a_stale_message_fails(pki: _PKI) -> None:
    signed = pki.sign(_envelope(OK_2021))
    later = NOW + timedelta(hours=2)
    with pytest.raises(SignatureError, match="stale or replayed"):
        verify_signature(signed, pem(pki.leaf.cert), pki.trust(), later)
    verify_signature(signed, pem(pki.leaf.cert), pki.trust(max_age_seconds=3 * 3600), later)


def test_a_certificate_from_another_ca_fails(pki: _PKI) -> None:
    other = _PKI()
    signed = other.sign(_envelope(OK_2021))
    with pytest.raises(SignatureError, match="certificate not trusted"):
        verify_signature(signed, pem(other.leaf.cert, other.inter.cert), pki.trust(), NOW)


def test_the_system_anchors_do_not_trust_a_private_ca(pki: _PKI) -> None:
    signed = pki.sign(_envelope(OK_2021))
    with pytest.raises(SignatureError, match="certificate not trusted"):
        verify_signature(signed, pem(pki.leaf.cert, pki.inter.cert), TrustSettings(), NOW)


def test_an_expired_certificate_fails(pki: _PKI) -> None:
    signed = pki.sign(_envelope(OK_2021))
    much_later = VALID_FROM + timedelta(days=4000)
    with pytest.raises(SignatureError, match="certificate not trusted"):
        verify_signature(signed, pem(pki.leaf.cert), pki.trust(max_age_seconds=None), much_later)


def test_a_certificate_not_named_for_sns_fails() -> None:
    rogue = _PKI(leaf_name="www.example.com")
    signed = rogue.sign(_envelope(OK_2021))
    with pytest.raises(SignatureError, match="not for SNS"):
        verify_signature(signed, pem(rogue.leaf.cert), rogue.trust(), NOW)


def test_garbage_instead_of_a_certificate_fails(pki: _PKI) -> None:
    with pytest.raises(SignatureError, match="not a PEM certificate"):
        verify_signature(pki.sign(_envelope(OK_2021)), b"<html>", pki.trust(), NOW)


def test_a_signed_message_from_a_foreign_topic_fails(pki: _PKI) -> None:
    signed = pki.sign(_envelope(OK_2021))
    with pytest.raises(SignatureError, match="TopicArn"):
        verify_signature(signed, pem(pki.leaf.cert), pki.trust(), NOW, {"topic_arns": [TOPIC_2015]})


@settings(max_examples=200, deadline=None)
@given(body=bodies(D))
def test_random_bodies_give_events_or_adapter_errors(body: bytes) -> None:
    only_events_or_adapter_errors(parse, Delivery(body=body, received_at=RECEIVED_AT))


# --- the intake's network part, against a real HTTPS server on loopback -----------------


@pytest.fixture
def fake_sns(pki: _PKI) -> Iterator[FakeSNS]:
    server = FakeSNS(pki.root, pem(pki.leaf.cert))
    yield server
    server.close()


def test_the_intake_flow_confirms_a_verified_subscription(pki: _PKI, fake_sns: FakeSNS) -> None:
    loopback = r"127\.0\.0\.1"
    envelope = {
        **_envelope(f"{D}/subscription_confirmation_real_2015.json"),
        "Timestamp": "2021-06-18T04:29:00.000Z",
        "SigningCertURL": f"{fake_sns.url}/SimpleNotificationService-test.pem",
        "SubscribeURL": f"{fake_sns.url}/?Action=ConfirmSubscription&Token=2336412f37",
    }
    delivery = _delivery(
        pki.sign(envelope), **{"x-amz-sns-message-type": "SubscriptionConfirmation"}
    )
    document = orjson.loads(delivery.body)

    events = parse(delivery, {})
    assert [(e.test, e.labels["sns_type"]) for e in events] == [(True, "SubscriptionConfirmation")]
    cert = fake_sns.get(signing_cert_url(document, host_pattern=loopback))
    verify_signature(
        document,
        cert,
        TrustSettings(anchors_pem=pem(pki.root.cert), intermediates_pem=pem(pki.inter.cert)),
        NOW,
    )
    confirm = subscription_confirm_url(delivery, host_pattern=loopback)
    assert confirm is not None
    fake_sns.get(confirm)
    assert fake_sns.confirmed == ["/?Action=ConfirmSubscription&Token=2336412f37"]


def test_the_intake_flow_never_fetches_from_a_host_the_settings_do_not_allow(
    fake_sns: FakeSNS,
) -> None:
    envelope = {"SigningCertURL": f"{fake_sns.url}/SimpleNotificationService-test.pem"}
    with pytest.raises(SignatureError, match="not an https URL on an SNS host"):
        signing_cert_url(envelope)
    assert fake_sns.confirmed == []
