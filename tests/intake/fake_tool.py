"""A tiny alert-source adapter for the intake's tests: the intake's behaviour, not a real
tool's format, is under test here (the real adapters have their own tests).

Body: JSON `{"alerts": [{"id", "state": "down"|"up", "at"?, "test"?}], "delivery"?}`, or
form / query fields `id`, `state`. Signed deliveries carry `x-fake-signature`, the hex
HMAC-SHA256 of the raw body.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.alert_sources.base import Delivery, require_object
from adapters.alert_sources.common import hmac_sha256_hex, parse_time, require_hex_signature
from adapters.alert_sources.errors import AdapterError
from engine.models import AlertEvent, EventStatus

SOURCE_TYPE = "fake-tool"
EXPECTED = 'fake-tool JSON {"alerts": [{"id": ..., "state": "down"|"up"}]} or fields id, state'


def verify(delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime) -> None:
    expected = hmac_sha256_hex(secret, delivery.body)
    require_hex_signature(
        expected, delivery.headers.get("x-fake-signature"), header="X-Fake-Signature"
    )


def _event(item: Any, delivery: Delivery, delivery_id: str | None) -> AlertEvent:
    if not isinstance(item, dict):
        raise AdapterError(f"alerts[]: expected an object, got {type(item).__name__}: {EXPECTED}")
    state = item.get("state")
    if state not in ("down", "up"):
        raise AdapterError(f"state: expected 'down' or 'up', got {state!r}: {EXPECTED}")
    if not isinstance(item.get("id"), str) or not item["id"]:
        raise AdapterError(f"id: expected a non-empty string: {EXPECTED}")
    at = item.get("at")
    occurred = parse_time(at, field="at") if at is not None else delivery.received_at
    return AlertEvent(
        source_type="fake-tool",
        dedup_key=item["id"],
        status=EventStatus.FIRING if state == "down" else EventStatus.RESOLVED,
        summary=str(item.get("summary", "")),
        occurred_at=occurred,
        received_at=delivery.received_at,
        raw=item,
        test=bool(item.get("test", False)),
        delivery_id=delivery_id,
    )


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    fields = delivery.fields() if (delivery.form or delivery.query) else {}
    if fields.get("data"):
        document = require_object(_json(fields["data"].encode()), expected=EXPECTED)
    elif fields:
        return [_event(fields, delivery, None)]
    else:
        document = require_object(delivery.json(expected=EXPECTED), expected=EXPECTED)
    alerts = document.get("alerts")
    if not isinstance(alerts, list):
        raise AdapterError(f"alerts: expected a list: {EXPECTED}")
    delivery_id = document.get("delivery") if isinstance(document.get("delivery"), str) else None
    return [_event(item, delivery, delivery_id) for item in alerts]


def _json(data: bytes) -> Any:
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise AdapterError(f"field data is not JSON: {EXPECTED}") from None
