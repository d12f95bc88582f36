"""Checkly webhook alert channel, with the body template Beacon documents (all variables).

Checkly has no fixed body: users paste a Handlebars template; Beacon reads the one in
docs/alert-sources.md (`alert_type`, `check_id`, `check_name`, ...). `alert_type` tells the
state: ALERT_FAILURE is firing and ALERT_RECOVERY resolves it; ALERT_DEGRADED and
ALERT_DEGRADED_RECOVERY are a separate, milder alert of the same check (their own dedup
key, so a degraded-recovery never ends a failure); ALERT_SSL is a certificate notice that
never resolves. A body still holding `{{VARIABLES}}` is the template itself and is refused.

Signing is optional: with a webhook secret Checkly sends `x-checkly-signature`, the hex
HMAC-SHA256 of the raw body, and `x-checkly-timestamp`. The timestamp is not covered by the
HMAC, so it only guards against late retries (Checkly retries up to 5 times, 20 s apart).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import (
    check_timestamp_skew,
    hmac_sha256_hex,
    labels_of,
    lookup,
    make_event,
    parse_time,
    refuse_placeholder,
    require_hex_signature,
    validate,
)
from .errors import AdapterError, SignatureError

SOURCE_TYPE = "checkly"
FORMAT = "Checkly webhook with Beacon's body template"
SIGNATURE_HEADER = "x-checkly-signature"
TIMESTAMP_HEADER = "x-checkly-timestamp"

# alert_type -> (status, severity, dedup-key suffix naming which alert of the check it is)
ALERT_TYPES: dict[str, tuple[EventStatus, Severity, str]] = {
    "ALERT_FAILURE": (EventStatus.FIRING, Severity.CRITICAL, ""),
    "ALERT_FAIL": (EventStatus.FIRING, Severity.CRITICAL, ""),  # older docs' name
    "ALERT_RECOVERY": (EventStatus.RESOLVED, Severity.CRITICAL, ""),
    "ALERT_DEGRADED": (EventStatus.FIRING, Severity.WARNING, ":degraded"),
    "ALERT_DEGRADED_RECOVERY": (EventStatus.RESOLVED, Severity.WARNING, ":degraded"),
    "ALERT_SSL": (EventStatus.FIRING, Severity.WARNING, ":ssl"),
}

_PLACEHOLDER = re.compile(r"\{\{\{?\s*[$A-Za-z_][^}]*\}\}")


class Settings(BaseModel):
    """Adapter settings of a Checkly alert source."""

    model_config = ConfigDict(extra="forbid")

    max_timestamp_skew_seconds: float = Field(default=300, gt=0)


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    alert_type: str
    check_id: str = Field(min_length=1)
    event: str | None = None
    check_name: str | None = None
    group_name: str | None = None
    check_type: str | None = None
    check_result_id: str | None = None
    check_error_message: str | None = None
    response_time: str | int | float | None = None
    api_check_response_status_code: str | int | None = None
    api_check_response_status_text: str | None = None
    run_location: str | None = None
    region: str | None = None
    ssl_days_remaining: str | int | None = None
    ssl_check_domain: str | None = None
    started_at: str | int | None = None
    tags: str | list[Any] | None = None
    link: str | None = None
    uuid: str | None = None


def verify(delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime) -> None:
    """Raise `SignatureError` unless `x-checkly-signature` is the body's HMAC under `secret`,
    and, when `x-checkly-timestamp` is sent, it lies within the allowed skew of `now`."""
    options = validate(Settings, dict(settings), expected="Checkly adapter settings")
    require_hex_signature(
        hmac_sha256_hex(secret, delivery.body),
        delivery.headers.get(SIGNATURE_HEADER),
        header=SIGNATURE_HEADER,
    )
    stamp = delivery.headers.get(TIMESTAMP_HEADER)
    if stamp:
        try:
            sent_at = parse_time(
                float(stamp) if _is_number(stamp) else stamp, field=TIMESTAMP_HEADER
            )
        except AdapterError as exc:
            raise SignatureError(str(exc)) from None
        check_timestamp_skew(
            sent_at,
            now,
            max_skew_seconds=options.max_timestamp_skew_seconds,
            header=TIMESTAMP_HEADER,
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the check's alert; an `AdapterError` for templates and unknown types."""
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    # Only the fields that name the alert are checked: an error message may quote braces.
    for name in ("alert_type", "check_id"):
        refuse_placeholder(document.get(name), _PLACEHOLDER, name, expected=FORMAT)
    body = validate(_Body, document, expected=FORMAT)
    status, severity, suffix = lookup(
        ALERT_TYPES, body.alert_type, field="alert_type", expected=FORMAT
    )
    title = body.event or f"{body.check_name or body.check_id}: {body.alert_type}"
    summary = f"{title}: {body.check_error_message}" if body.check_error_message else title
    tags = body.tags if isinstance(body.tags, str) else ",".join(map(str, body.tags or []))
    labels = {
        "alert_type": body.alert_type,
        "check_id": body.check_id,
        "check_name": body.check_name,
        "check_type": body.check_type,
        "group_name": body.group_name,
        "run_location": body.run_location,
        "region": body.region,
        "response_time": body.response_time,
        "status_code": body.api_check_response_status_code,
        "status_text": body.api_check_response_status_text,
        "ssl_check_domain": body.ssl_check_domain,
        "ssl_days_remaining": body.ssl_days_remaining,
        "tags": tags,
    }
    started = body.started_at
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=f"check:{body.check_id}{suffix}",
            status=status,
            severity=severity,
            summary=summary,
            details=body.check_error_message or "",
            labels=labels_of(labels),
            links=[body.link] if body.link else [],
            occurred_at=parse_time(started, field="started_at")
            if started
            else delivery.received_at,
            received_at=delivery.received_at,
            raw=document,
            # `{{$UUID}}` is random per rendered body: it names this delivery, not the alert.
            delivery_id=body.uuid or None,
        )
    ]
