"""Healthchecks.io "Webhook" integration: user-written URL and body templates per flip.

Healthchecks sends raw bodies without a Content-Type, so the body is read as JSON whatever
the header says, and a body-less GET is read from its query string (configure the down and
up URLs as `...?status=$STATUS&code=$CODE&name=$NAME`). Accepted shapes: the check object
itself (`$JSON`), an object nesting it under `check` (`{"now": "$NOW", "check": $JSON}`),
or flat fields (`status`, `code`, `name`, `now`, `tags`). A template pasted as a body
(`$NAME` left in, or `$JSON` making it invalid JSON) is refused.

`status` `down` fires, `up` resolves; the dedup key is `check:<uuid>` (`$CODE`). The Test
button sends a dummy check named `TEST`: a test event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import make_event, parse_time, refuse_dollar_variable, text_labels
from .errors import AdapterError

SOURCE_TYPE = "healthchecks"
FORMAT = "Healthchecks.io webhook"

STATUSES: dict[str, tuple[EventStatus, Severity]] = {
    "down": (EventStatus.FIRING, Severity.CRITICAL),
    "up": (EventStatus.RESOLVED, Severity.CRITICAL),
}
TEST_CHECK_NAME = "TEST"
TIME_FIELDS = ("now", "current time", "current_time", "time")


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the check's flip to down or up."""
    document = _document(delivery)
    refuse_dollar_variable(document, template="body template", expected=FORMAT)
    check = document.get("check")
    check = check if isinstance(check, dict) else {}
    # Flat fields ($STATUS, $CODE) describe the flip itself and win over the nested check.
    merged = {**check, **{k: v for k, v in document.items() if k != "check"}}
    status_word = _text(merged, "status").lower()
    if status_word not in STATUSES:
        raise AdapterError(f"status: expected 'down' or 'up', got {status_word[:30]!r} ({FORMAT})")
    status, severity = STATUSES[status_word]
    code = _text(merged, "code") or _text(merged, "uuid")
    slug = _text(merged, "slug")
    name = _text(merged, "name")
    key = code or slug or name
    if not key:
        raise AdapterError(
            f"code: missing, and no uuid, slug or name to key the check on ({FORMAT})"
        )
    tags = _text(merged, "tags")
    when = next((merged[f] for f in TIME_FIELDS if merged.get(f)), None)
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=f"check:{key}",
            status=status,
            severity=severity,
            summary=f"{name or key} is {status_word}",
            details=_text(merged, "desc"),
            labels={
                **text_labels(
                    check_id=code,
                    check_name=name,
                    check_slug=slug,
                    tags=tags,
                ),
                **{f"tag.{t}": "true" for t in tags.split()},
            },
            # ping_url lets anyone ping the check: a capability, not a link to show.
            links=[],
            occurred_at=parse_time(when, field="now") if when else delivery.received_at,
            received_at=delivery.received_at,
            raw=document,
            test=name == TEST_CHECK_NAME,
        )
    ]


def _document(delivery: Delivery) -> dict[str, Any]:
    text = delivery.body.strip()
    if text.startswith((b"{", b"[")):
        # JSON whatever the header says: curl and HTTP libraries label a string body
        # urlencoded, which the intake then decodes as a form of one odd field.
        return require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    if delivery.form:
        return dict(delivery.form)
    if text and not text.startswith((b"{", b"[")):
        # A form-style body template (status=$STATUS&code=$CODE), sent without a type.
        fields = delivery.fields()
        if "status" in fields:
            return fields
    if text:
        return require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    fields = delivery.fields()
    if not fields:
        raise AdapterError(
            f"empty delivery: expected a JSON body or query fields status and code ({FORMAT})"
        )
    return fields


def _text(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise AdapterError(f"{name}: expected a string, got {type(value).__name__} ({FORMAT})")
