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
   `verify_signature(envelope, pem, TrustSettings(...), now, settings)`. What it returns
   may stand for that PEM in later calls under the same trust settings, for no longer
   than the PEM is cached: the chain is not verified again, only its validity at `now`.
3. After the signature holds, `subscription_confirm_url(delivery, settings)` returns the
   SubscribeURL of a SubscriptionConfirmation: GET it (timeout, no redirects to other
   hosts) to confirm the subscription; record failures and let SNS retry the confirmation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import labels_of, lookup, make_event, parse_time, validate
from .errors import AdapterError, SignatureError
from .sns_signature import (
    TrustedCertificate,
    TrustSettings,
    canonical_string,
    verify_envelope,
)

__all__ = [
    "SOURCE_TYPE",
    "Settings",
    "TrustSettings",
    "TrustedCertificate",
    "canonical_string",
    "parse",
    "refuse_unsigned",
    "signing_cert_url",
    "subscription_confirm_url",
    "verify_signature",
]

SOURCE_TYPE = "cloudwatch"
FORMAT = "Amazon SNS HTTP(S) notification carrying a CloudWatch alarm"
ALARM = "CloudWatch alarm JSON (SNS raw message delivery)"
SNS_HOST = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
STATE: dict[str, EventStatus | None] = {
    "ALARM": EventStatus.FIRING,
    "OK": EventStatus.RESOLVED,
    "INSUFFICIENT_DATA": None,  # decided by the `insufficient_data` setting
}


class Settings(BaseModel):
    """Adapter settings of a CloudWatch (SNS) alert source."""

    model_config = ConfigDict(extra="forbid")

    # When set, envelopes from other topics are refused, and so are raw message deliveries
    # (unsigned, they name no topic that could be checked).
    topic_arns: list[str] = Field(default_factory=list)
    # SNS raw message delivery: the alarm itself, unsigned, the integration key the only
    # secret. False: only signed envelopes are accepted.
    raw_messages: bool = True
    insufficient_data: Literal["ignore", "firing", "resolved"] = "ignore"
    severity: Severity = Severity.CRITICAL


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
    options = validate(Settings, dict(settings), expected="CloudWatch adapter settings")
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    if "AlarmName" in document and "Type" not in document:
        alarm = validate(_Alarm, document, expected=ALARM)
        return _alarm_events(delivery, alarm, options, raw=document, envelope=None)
    envelope = validate(_Envelope, document, expected=FORMAT)
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
    alarm = validate(_Alarm, message, expected=FORMAT, where="Message")
    return _alarm_events(delivery, alarm, options, raw=document, envelope=envelope)


def refuse_unsigned(settings: Mapping[str, Any]) -> None:
    """`SignatureError` when the source asks for signed SNS envelopes (`topic_arns`, or
    `raw_messages: false`): the intake calls this for a delivery without an envelope (a raw
    message delivery, unsigned). The authenticated test route and the CLI, which take
    pasted bodies, do not."""
    options = validate(Settings, dict(settings), expected="CloudWatch adapter settings")
    if options.raw_messages and not options.topic_arns:
        return
    why = (
        "its topic_arns can only be checked on a signed SNS envelope"
        if options.topic_arns
        else "its setting raw_messages is false"
    )
    raise SignatureError(
        f"unsigned raw message delivery refused: this source accepts only signed SNS "
        f"envelopes ({why}); turn raw message delivery off on the SNS subscription"
    )


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
            labels=labels_of(labels),
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


def _sns_url(url: object, field: str, host_pattern: str) -> str:
    """`url` if it is https on an SNS host, else `SignatureError` (never fetch elsewhere).

    Which hosts are SNS is the operator's setting (`BEACON_SNS_HOST_PATTERN`, the caller
    passes it), never a source's: it decides where Beacon itself connects to."""
    if not isinstance(url, str) or not url:
        raise SignatureError(f"{field}: missing")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # e.g. an unbalanced "[" in the host
        host, parts = "", urlsplit("")
    if parts.scheme != "https" or not re.fullmatch(host_pattern, host):
        raise SignatureError(f"{field}: {url[:100]!r} is not an https URL on an SNS host")
    return url


def signing_cert_url(
    envelope: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    host_pattern: str = SNS_HOST,
) -> str:
    """The envelope's `SigningCertURL`, only if it is https on `sns.<region>.amazonaws.com`
    (or `.amazonaws.com.cn`, or the operator's `host_pattern`); `SignatureError` otherwise."""
    validate(Settings, dict(settings or {}), expected="CloudWatch adapter settings")
    return _sns_url(envelope.get("SigningCertURL"), "SigningCertURL", host_pattern)


def subscription_confirm_url(
    delivery: Delivery, settings: Mapping[str, Any] | None = None, host_pattern: str = SNS_HOST
) -> str | None:
    """The `SubscribeURL` to GET when `delivery` is a SubscriptionConfirmation whose URL is
    https on an SNS host; None for every other delivery. Call it only after the signature
    holds, so that nobody but SNS makes Beacon fetch a URL."""
    validate(Settings, dict(settings or {}), expected="CloudWatch adapter settings")
    try:
        document = delivery.json(expected=FORMAT)
    except AdapterError:
        return None
    if not isinstance(document, dict) or document.get("Type") != "SubscriptionConfirmation":
        return None
    try:
        return _sns_url(document.get("SubscribeURL"), "SubscribeURL", host_pattern)
    except SignatureError:
        return None


def verify_signature(
    envelope: Mapping[str, Any],
    cert: bytes | TrustedCertificate,
    trust: TrustSettings,
    now: datetime,
    settings: Mapping[str, Any] | None = None,
) -> TrustedCertificate:
    """Raise `SignatureError` unless `envelope` was signed by the certificate `cert` (the
    PEM fetched from `signing_cert_url`), that certificate chains to `trust`'s anchors at
    `now` and is named for SNS, the message is not older than `trust.max_age_seconds`, and
    its topic is allowed by the settings. Returns the trusted certificate, which may stand
    for the PEM in later calls with the same trust (`verify_envelope`)."""
    options = validate(Settings, dict(settings or {}), expected="CloudWatch adapter settings")
    trusted = verify_envelope(envelope, cert, trust, now)
    topic = str(envelope.get("TopicArn"))
    if options.topic_arns and topic not in options.topic_arns:
        raise SignatureError(f"TopicArn: {topic!r} is not one of this source's topic_arns")
    return trusted
