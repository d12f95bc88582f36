"""Amazon CloudWatch alarms delivered by an SNS HTTP/HTTPS subscription.

SNS posts a JSON envelope (`Content-Type: text/plain`) whose `Type` is:

- `SubscriptionConfirmation`: the first delivery; nothing reaches Beacon until the
  subscription is confirmed. Parsed as one test event (acknowledged, changes nothing).
- `Notification`: `Message` is a string holding the CloudWatch alarm as JSON. `NewStateValue`
  ALARM is firing, OK resolved; INSUFFICIENT_DATA follows the `insufficient_data` setting
  (default: no event). A `Message` that is not an alarm (the console's "Publish message"
  test, say) is acknowledged as a test event.
- `UnsubscribeConfirmation`: a test event too; the subscription is gone.

With raw message delivery enabled the body is the alarm JSON itself, without envelope or
signature. The dedup key is the alarm's ARN (`AlarmArn`), or, in alarms from before it
existed, `alarm:<account>:<region>:<name>` (names are unique per account and region).
`MessageId` is the delivery id: SNS repeats it on retries.

What the intake must do for a `cloudwatch` source, since adapters never touch the network:

1. `parse(delivery, settings)` as for every source.
2. Unless the body is a raw message (no `Signature`), verify the envelope:
   `url = signing_cert_url(envelope, settings)` (https on an SNS host, or
   `SignatureError`); fetch it with a short timeout (5 s) and cache the PEM by URL (SNS
   reuses its signing certificate for months; cache for hours, never without bound); then
   `verify_signature(envelope, pem, TrustSettings(...), now, settings)`.
3. After the signature holds, `subscription_confirm_url(delivery, settings)` returns the
   SubscribeURL of a SubscriptionConfirmation: GET it (timeout, no redirects to other
   hosts) to confirm the subscription; record failures and let SNS retry the confirmation.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
import warnings
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import load_model, lookup, make_event, parse_time
from .errors import AdapterError, SignatureError

SOURCE_TYPE = "cloudwatch"
FORMAT = "Amazon SNS HTTP(S) notification carrying a CloudWatch alarm"
ALARM = "CloudWatch alarm JSON (SNS raw message delivery)"
SNS_HOST = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
# The name in SNS signing certificates: sns.amazonaws.com, or a regional SNS host.
SNS_CERT_SUBJECT = r"sns(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?"

# The fields SNS signs, in the order it signs them, per message type.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS["UnsubscribeConfirmation"] = SIGNED_FIELDS["SubscriptionConfirmation"]
SIGNATURE_HASH: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

STATE: dict[str, EventStatus | None] = {
    "ALARM": EventStatus.FIRING,
    "OK": EventStatus.RESOLVED,
    "INSUFFICIENT_DATA": None,  # decided by the `insufficient_data` setting
}


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


class Settings(BaseModel):
    """Adapter settings of a CloudWatch (SNS) alert source."""

    model_config = ConfigDict(extra="forbid")

    # Only SNS itself may serve signing certificates and confirmation URLs. Tests point
    # this at a loopback host; in production leave it alone.
    sns_host_pattern: str = SNS_HOST
    # When set, envelopes from other topics are refused.
    topic_arns: list[str] = Field(default_factory=list)
    insufficient_data: Literal["ignore", "firing", "resolved"] = "ignore"
    severity: Severity = Severity.CRITICAL

    @field_validator("sns_host_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        return _compiles(value)


class TrustSettings(BaseModel):
    """What a signing certificate must chain to and be named for.

    `anchors_pem` None means the system's public CAs (Amazon's roots are among them).
    The `.pem` SNS serves holds only its leaf certificate: when the issuing intermediate is
    not in the anchors, pass it in `intermediates_pem` (Amazon publishes them).
    """

    model_config = ConfigDict(extra="forbid")

    anchors_pem: bytes | None = None
    intermediates_pem: bytes | None = None
    subject_pattern: str = SNS_CERT_SUBJECT
    # SNS retries a delivery for up to an hour under its default policies: a signed
    # message older than this is a replay.
    max_age_seconds: float | None = Field(default=3600, gt=0)

    @field_validator("subject_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        return _compiles(value)


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    Type: str
    MessageId: str = Field(min_length=1)
    TopicArn: str = Field(min_length=1)
    Message: str
    Timestamp: str
    Subject: str | None = None
    SignatureVersion: str | None = None
    Signature: str | None = None
    SigningCertURL: str | None = None
    SubscribeURL: str | None = None
    UnsubscribeURL: str | None = None
    Token: str | None = None


class _Dimension(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    value: str | int | float


class _Trigger(BaseModel):
    model_config = ConfigDict(extra="allow")

    MetricName: str | None = None
    Namespace: str | None = None
    Statistic: str | None = None
    Dimensions: list[_Dimension] = Field(default_factory=list)
    ComparisonOperator: str | None = None
    Threshold: float | None = None


class _Alarm(BaseModel):
    model_config = ConfigDict(extra="allow")

    AlarmName: str = Field(min_length=1)
    NewStateValue: str
    StateChangeTime: str
    AlarmDescription: str | None = None
    AWSAccountId: str | None = None
    NewStateReason: str | None = None
    Region: str | None = None
    AlarmArn: str | None = None
    OldStateValue: str | None = None
    Trigger: _Trigger | None = None


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """Events for one SNS delivery: the alarm's state, or a test event for subscription
    notices and non-alarm messages. A raw-delivery body is read as the alarm itself."""
    options = load_model(Settings, dict(settings), expected="CloudWatch adapter settings")
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    if "AlarmName" in document and "Type" not in document:
        alarm = load_model(_Alarm, document, expected=ALARM)
        return _alarm_events(delivery, alarm, options, raw=document, envelope=None)
    envelope = load_model(_Envelope, document, expected=FORMAT)
    declared = delivery.headers.get("x-amz-sns-message-type")
    if declared and declared != envelope.Type:
        raise AdapterError(
            f"Type: {envelope.Type!r} differs from the x-amz-sns-message-type header "
            f"{declared!r} ({FORMAT})"
        )
    _check_topic(envelope.TopicArn, options)
    if envelope.Type in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return [_notice(delivery, envelope, document)]
    if envelope.Type != "Notification":
        raise AdapterError(
            "Type: expected 'Notification', 'SubscriptionConfirmation' or "
            f"'UnsubscribeConfirmation', got {envelope.Type!r} ({FORMAT})"
        )
    try:
        message = orjson.loads(envelope.Message)
    except orjson.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or "AlarmName" not in message:
        return [_notice(delivery, envelope, document)]
    alarm = load_model(_Alarm, message, expected=FORMAT, where="Message")
    return _alarm_events(delivery, alarm, options, raw=document, envelope=envelope)


def _check_topic(topic_arn: str, options: Settings) -> None:
    if options.topic_arns and topic_arn not in options.topic_arns:
        raise AdapterError(f"TopicArn: {topic_arn!r} is not one of this source's topic_arns")


def _notice(delivery: Delivery, envelope: _Envelope, document: dict[str, Any]) -> AlertEvent:
    """A delivery that is no alarm: acknowledged, never evaluated."""
    summary = {
        "SubscriptionConfirmation": f"SNS subscription confirmation for {envelope.TopicArn}",
        "UnsubscribeConfirmation": f"SNS unsubscribe confirmation for {envelope.TopicArn}",
    }.get(envelope.Type) or (envelope.Subject or envelope.Message[:200] or "SNS message")
    return make_event(
        expected=FORMAT,
        source_type=SOURCE_TYPE,
        dedup_key=f"sns:{envelope.Type}:{envelope.TopicArn}",
        status=EventStatus.FIRING,
        severity=Severity.INFO,
        summary=summary,
        details=envelope.Message,
        labels={"sns_type": envelope.Type, "topic_arn": envelope.TopicArn},
        occurred_at=parse_time(envelope.Timestamp, field="Timestamp"),
        received_at=delivery.received_at,
        raw=document,
        test=True,
        delivery_id=envelope.MessageId,
    )


def _alarm_events(
    delivery: Delivery,
    alarm: _Alarm,
    options: Settings,
    *,
    raw: dict[str, Any],
    envelope: _Envelope | None,
) -> list[AlertEvent]:
    where = "Message." if envelope else ""
    expected = FORMAT if envelope else ALARM
    status = lookup(STATE, alarm.NewStateValue, field=f"{where}NewStateValue", expected=expected)
    if status is None:
        if options.insufficient_data == "ignore":
            return []
        status = EventStatus(options.insufficient_data)
    dedup_key = alarm.AlarmArn or f"alarm:{alarm.AWSAccountId}:{alarm.Region}:{alarm.AlarmName}"
    trigger = alarm.Trigger or _Trigger()
    labels: dict[str, Any] = {
        "alarm_name": alarm.AlarmName,
        "alarm_arn": alarm.AlarmArn,
        "account_id": alarm.AWSAccountId,
        "region": alarm.Region,
        "new_state": alarm.NewStateValue,
        "old_state": alarm.OldStateValue,
        "metric_name": trigger.MetricName,
        "namespace": trigger.Namespace,
        "statistic": trigger.Statistic,
        "comparison_operator": trigger.ComparisonOperator,
        "threshold": trigger.Threshold,
        "topic_arn": envelope.TopicArn if envelope else None,
    }
    labels.update({f"dimension.{d.name}": d.value for d in trigger.Dimensions})
    summary = alarm.AlarmName
    if alarm.NewStateReason:
        summary = f"{summary}: {alarm.NewStateReason}"
    return [
        make_event(
            expected=expected,
            source_type=SOURCE_TYPE,
            dedup_key=dedup_key,
            status=status,
            severity=options.severity,
            summary=summary,
            details=alarm.AlarmDescription or "",
            labels={k: v for k, v in labels.items() if v not in (None, "")},
            links=_console_link(alarm),
            occurred_at=parse_time(alarm.StateChangeTime, field=f"{where}StateChangeTime"),
            received_at=delivery.received_at,
            raw=raw,
            delivery_id=envelope.MessageId if envelope else None,
        )
    ]


def _console_link(alarm: _Alarm) -> list[str]:
    parts = (alarm.AlarmArn or "").split(":")
    if len(parts) < 4 or not parts[3]:
        return []
    region = parts[3]
    return [
        f"https://console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#alarmsV2:alarm/{quote(alarm.AlarmName, safe='')}"
    ]


# --- the signature: pure functions, the intake does the fetching ----------------------


def _sns_url(url: object, field: str, options: Settings) -> str:
    """`url` if it is https on an SNS host, else `SignatureError` (never fetch elsewhere)."""
    if not isinstance(url, str) or not url:
        raise SignatureError(f"{field}: missing")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or not re.fullmatch(options.sns_host_pattern, host):
        raise SignatureError(f"{field}: {url[:100]!r} is not an https URL on an SNS host")
    return url


def signing_cert_url(envelope: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> str:
    """The envelope's `SigningCertURL`, only if it is https on `sns.<region>.amazonaws.com`
    (or `.amazonaws.com.cn`, or the settings' test host); `SignatureError` otherwise."""
    options = load_model(Settings, dict(settings or {}), expected="CloudWatch adapter settings")
    return _sns_url(envelope.get("SigningCertURL"), "SigningCertURL", options)


def subscription_confirm_url(
    delivery: Delivery, settings: Mapping[str, Any] | None = None
) -> str | None:
    """The `SubscribeURL` to GET when `delivery` is a SubscriptionConfirmation whose URL is
    https on an SNS host; None for every other delivery. Call it only after the signature
    holds, so that nobody but SNS makes Beacon fetch a URL."""
    options = load_model(Settings, dict(settings or {}), expected="CloudWatch adapter settings")
    try:
        document = delivery.json(expected=FORMAT)
    except AdapterError:
        return None
    if not isinstance(document, dict) or document.get("Type") != "SubscriptionConfirmation":
        return None
    try:
        return _sns_url(document.get("SubscribeURL"), "SubscribeURL", options)
    except SignatureError:
        return None


def canonical_string(envelope: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs: `name\\nvalue\\n` for each signed field of the message type, in
    SNS's order; `Subject` only when present. `SignatureError` when a field is missing."""
    kind = envelope.get("Type")
    fields = SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise SignatureError(f"Type: cannot verify a message of type {kind!r}")
    text = []
    for name in fields:
        value = envelope.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise SignatureError(f"{name}: missing, yet SNS signs it")
        text.append(f"{name}\n{value}\n")
    return "".join(text).encode()


def verify_signature(
    envelope: Mapping[str, Any],
    cert_pem: bytes,
    trust: TrustSettings,
    now: datetime,
    settings: Mapping[str, Any] | None = None,
) -> None:
    """Raise `SignatureError` unless `envelope` was signed by the certificate in `cert_pem`
    (fetched from `signing_cert_url`), that certificate chains to `trust`'s anchors at
    `now` and is named for SNS, the message is not older than `trust.max_age_seconds`, and
    its topic is allowed by the settings."""
    options = load_model(Settings, dict(settings or {}), expected="CloudWatch adapter settings")
    algorithm = SIGNATURE_HASH.get(str(envelope.get("SignatureVersion")))
    if algorithm is None:
        raise SignatureError(
            f"SignatureVersion: expected '1' or '2', got {envelope.get('SignatureVersion')!r}"
        )
    try:
        signature = base64.b64decode(str(envelope.get("Signature") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Signature: not base64") from None
    if not signature:
        raise SignatureError("Signature: missing")
    message = canonical_string(envelope)
    leaf = _trusted_leaf(cert_pem, trust, now)
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("SigningCertURL: the certificate's key is not RSA")
    try:
        key.verify(signature, message, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SignatureError("Signature: does not match the message") from None
    topic = str(envelope.get("TopicArn"))
    if options.topic_arns and topic not in options.topic_arns:
        raise SignatureError(f"TopicArn: {topic!r} is not one of this source's topic_arns")
    if trust.max_age_seconds is not None:
        try:
            sent_at = parse_time(envelope.get("Timestamp"), field="Timestamp")
        except AdapterError as exc:
            raise SignatureError(str(exc)) from None
        if (now - sent_at).total_seconds() > trust.max_age_seconds:
            raise SignatureError(
                f"Timestamp: {sent_at.isoformat()} is older than {trust.max_age_seconds:g}s: "
                "stale or replayed message"
            )


def _trusted_leaf(cert_pem: bytes, trust: TrustSettings, now: datetime) -> x509.Certificate:
    try:
        leaf, *intermediates = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise SignatureError("SigningCertURL: not a PEM certificate") from None
    try:
        if trust.intermediates_pem:
            intermediates += x509.load_pem_x509_certificates(trust.intermediates_pem)
        anchors = (
            x509.load_pem_x509_certificates(trust.anchors_pem)
            if trust.anchors_pem
            else list(_system_anchors())
        )
    except ValueError as exc:
        raise SignatureError(f"trust settings: unreadable certificates ({exc})") from None
    # SNS signing certificates are issued for TLS servers (serverAuth), not for clients or
    # code signing, so the leaf's extensions are not held to a purpose; the CAs are.
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(now)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise SignatureError(f"SigningCertURL: certificate not trusted ({exc})") from None
    names = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    if not any(re.fullmatch(trust.subject_pattern, str(name)) for name in names):
        raise SignatureError(f"SigningCertURL: certificate is for {names!r}, not for SNS")
    return leaf


@lru_cache(maxsize=1)
def _system_anchors() -> tuple[x509.Certificate, ...]:
    """The system's CA bundle (certifi's where the system has none), read once."""
    cafile = ssl.get_default_verify_paths().cafile
    if not cafile or not Path(cafile).exists():
        import certifi

        cafile = certifi.where()
    anchors = []
    end = b"-----END CERTIFICATE-----"
    for block in Path(cafile).read_bytes().split(end)[:-1]:
        # Some long-lived roots break RFC 5280 (a negative serial, say): cryptography warns
        # about them today and will refuse them later. None of them is Amazon's: skip them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                anchors.append(x509.load_pem_x509_certificate(block + end))
            except ValueError:
                continue
    return tuple(anchors)
