"""Sentry integration-platform webhooks: issue alerts, issues and metric alerts.

Which resource a delivery is about comes from the `Sentry-Hook-Resource` header, or from the
body's shape when the header is missing. `event_alert` (an issue alert rule fired) only
fires, keyed `issue:<issue id>`, so the `issue` webhook's `resolved` (same key) ends it:
subscribe the integration to both. `issue` actions `created` and `unresolved` fire,
`resolved` and `archived` resolve, `assigned` is acknowledged without an event.
`metric_alert` actions `critical` and `warning` fire and `resolved` resolves, keyed
`metric_alert:<incident id>`. Other resources (installation, comment, error) give no event.

Signature: `Sentry-Hook-Signature` is the HMAC-SHA256 of the raw body with the
integration's client secret. `Sentry-Hook-Timestamp` is not part of what is signed, so its
check (within `max_skew_seconds` of now, when sent) stops only replays that keep the
original header: a cheap extra, not a guarantee.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import (
    check_timestamp_skew,
    hmac_sha256_hex,
    make_event,
    parse_time,
    require_hex_signature,
    text_labels,
    validate,
)
from .errors import AdapterError, SignatureError

SOURCE_TYPE = "sentry"
FORMAT = "Sentry integration webhook"
SIGNATURE_HEADER = "Sentry-Hook-Signature"
TIMESTAMP_HEADER = "Sentry-Hook-Timestamp"

LEVEL_SEVERITY: dict[str, Severity] = {
    "fatal": Severity.CRITICAL,
    "error": Severity.HIGH,
    "warning": Severity.WARNING,
    "info": Severity.INFO,
    "debug": Severity.INFO,
}
ISSUE_ACTIONS: dict[str, EventStatus] = {
    "created": EventStatus.FIRING,
    "unresolved": EventStatus.FIRING,
    "resolved": EventStatus.RESOLVED,
    "archived": EventStatus.RESOLVED,
    "ignored": EventStatus.RESOLVED,
}
METRIC_ACTIONS: dict[str, tuple[EventStatus, Severity]] = {
    "critical": (EventStatus.FIRING, Severity.CRITICAL),
    "warning": (EventStatus.FIRING, Severity.WARNING),
    "resolved": (EventStatus.RESOLVED, Severity.INFO),
}


class Settings(BaseModel):
    """Adapter settings of a Sentry alert source; `max_skew_seconds: null` turns the
    timestamp check off."""

    model_config = ConfigDict(extra="forbid")

    max_skew_seconds: int | None = Field(default=300, ge=1, le=86400)


class Hook(BaseModel):
    """The envelope every integration-platform webhook shares."""

    model_config = ConfigDict(extra="allow")

    action: str
    data: dict[str, Any]


class SentryEvent(BaseModel):
    """`data.event` of an issue alert."""

    model_config = ConfigDict(extra="allow")

    issue_id: str | int
    title: str = ""
    level: str = ""
    datetime: str | None = None
    timestamp: float | None = None
    platform: str | None = None
    project: int | str | None = None
    culprit: str | None = None
    web_url: str = ""
    tags: list[Any] = Field(default_factory=list)


class Project(BaseModel):
    """An issue's project reference."""

    model_config = ConfigDict(extra="allow")

    id: str | int | None = None
    slug: str | None = None


class Issue(BaseModel):
    """`data.issue` of an issue webhook."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str | int
    short_id: str | None = Field(default=None, alias="shortId")
    title: str = ""
    level: str = ""
    status: str | None = None
    platform: str | None = None
    project: Project | None = None
    first_seen: str | None = Field(default=None, alias="firstSeen")
    last_seen: str | None = Field(default=None, alias="lastSeen")
    permalink: str | None = None


class AlertRule(BaseModel):
    """A metric alert's rule."""

    model_config = ConfigDict(extra="allow")

    id: str | int | None = None
    name: str = ""


class MetricAlert(BaseModel):
    """`data.metric_alert`: the metric alert incident."""

    model_config = ConfigDict(extra="allow")

    id: str | int
    title: str = ""
    alert_rule: AlertRule = Field(default_factory=AlertRule)
    date_started: str | None = None
    date_detected: str | None = None
    date_closed: str | None = None
    projects: list[str] = Field(default_factory=list)


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for an alert or issue state change; nothing for other resources."""
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    hook = validate(Hook, document, expected=FORMAT)
    resource = delivery.headers.get("sentry-hook-resource") or _resource_of(hook.data)
    if resource == "event_alert":
        return [_event_alert(hook, document, delivery)]
    if resource == "issue":
        return _issue(hook, document, delivery)
    if resource == "metric_alert":
        return [_metric_alert(hook, document, delivery)]
    return []


def _resource_of(data: Mapping[str, Any]) -> str:
    if "metric_alert" in data:
        return "metric_alert"
    if "event" in data and ("triggered_rule" in data or "issue_alert" in data):
        return "event_alert"
    if "issue" in data:
        return "issue"
    return "unknown"


def _event_alert(hook: Hook, document: dict[str, Any], delivery: Delivery) -> AlertEvent:
    event = validate(SentryEvent, hook.data.get("event"), expected=FORMAT, where="data.event")
    when = event.datetime or event.timestamp
    rule = hook.data.get("triggered_rule")
    tags = {
        f"tag.{pair[0]}": str(pair[1])
        for pair in event.tags
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
    }
    return make_event(
        expected=FORMAT,
        source_type=SOURCE_TYPE,
        dedup_key=f"issue:{event.issue_id}",
        status=EventStatus.FIRING,
        severity=LEVEL_SEVERITY.get(event.level.lower(), Severity.HIGH),
        summary=event.title or f"issue {event.issue_id}",
        details=event.culprit or "",
        labels={
            **text_labels(
                resource="event_alert",
                action=hook.action,
                rule=rule if isinstance(rule, str) else None,
                issue_id=str(event.issue_id),
                level=event.level,
                platform=event.platform,
                project_id=event.project,
            ),
            **tags,
        },
        links=[event.web_url] if event.web_url else [],
        occurred_at=parse_time(when, field="data.event.datetime")
        if when is not None
        else delivery.received_at,
        received_at=delivery.received_at,
        raw=document,
    )


def _issue(hook: Hook, document: dict[str, Any], delivery: Delivery) -> list[AlertEvent]:
    status = ISSUE_ACTIONS.get(hook.action)
    if status is None:
        return []  # assigned and the like change who, not whether
    issue = validate(Issue, hook.data.get("issue"), expected=FORMAT, where="data.issue")
    # Sentry says when an issue was first and last seen, never when it was resolved or
    # reopened: those take the webhook's own time (Sentry-Hook-Timestamp), else the
    # delivery's. A reopen dated by `lastSeen` would be older than the resolve before it
    # and be ignored as a late firing.
    occurred = delivery.received_at
    if hook.action == "created" and issue.first_seen:
        occurred = parse_time(issue.first_seen, field="data.issue.firstSeen")
    elif hook.action != "created":
        occurred = _hook_time(delivery) or delivery.received_at
    project = issue.project or Project()
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=f"issue:{issue.id}",
            status=status,
            severity=LEVEL_SEVERITY.get(issue.level.lower(), Severity.HIGH),
            summary=issue.title or f"issue {issue.id}",
            labels=text_labels(
                resource="issue",
                action=hook.action,
                issue_id=str(issue.id),
                short_id=issue.short_id,
                level=issue.level,
                issue_status=issue.status,
                platform=issue.platform,
                project=project.slug,
                project_id=project.id,
            ),
            links=[issue.permalink] if issue.permalink else [],
            occurred_at=occurred,
            received_at=delivery.received_at,
            raw=document,
        )
    ]


def _metric_alert(hook: Hook, document: dict[str, Any], delivery: Delivery) -> AlertEvent:
    if hook.action not in METRIC_ACTIONS:
        raise AdapterError(
            f"action: expected critical, warning or resolved for a metric alert, got "
            f"{hook.action[:30]!r} ({FORMAT})"
        )
    status, severity = METRIC_ACTIONS[hook.action]
    alert = validate(
        MetricAlert, hook.data.get("metric_alert"), expected=FORMAT, where="data.metric_alert"
    )
    if status is EventStatus.FIRING:
        when, name = alert.date_started or alert.date_detected, "date_started"
    else:
        when, name = alert.date_closed, "date_closed"
    title = hook.data.get("description_title")
    web_url = hook.data.get("web_url")
    return make_event(
        expected=FORMAT,
        source_type=SOURCE_TYPE,
        dedup_key=f"metric_alert:{alert.id}",
        status=status,
        severity=severity,
        summary=(title if isinstance(title, str) and title else alert.alert_rule.name)
        or f"metric alert {alert.id}",
        details=str(hook.data.get("description_text") or ""),
        labels=text_labels(
            resource="metric_alert",
            action=hook.action,
            metric_alert_id=str(alert.id),
            alert_rule=alert.alert_rule.name,
            alert_rule_id=alert.alert_rule.id,
            projects=",".join(alert.projects),
        ),
        links=[web_url] if isinstance(web_url, str) and web_url else [],
        occurred_at=parse_time(when, field=f"data.metric_alert.{name}")
        if when
        else delivery.received_at,
        received_at=delivery.received_at,
        raw=document,
    )


def verify(delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime) -> None:
    """Accept the delivery when `Sentry-Hook-Signature` is the HMAC-SHA256 of the raw body
    with `secret` (the client secret) and its `Sentry-Hook-Timestamp`, when sent, is within
    `max_skew_seconds` of `now`; else `SignatureError`."""
    config = validate(Settings, dict(settings), expected="Sentry adapter settings")
    given = delivery.headers.get(SIGNATURE_HEADER.lower())
    require_hex_signature(hmac_sha256_hex(secret, delivery.body), given, header=SIGNATURE_HEADER)
    stamp = delivery.headers.get(TIMESTAMP_HEADER.lower(), "").strip()
    if stamp and config.max_skew_seconds is not None:
        check_timestamp_skew(
            _sent_at(stamp), now, max_skew_seconds=config.max_skew_seconds, header=TIMESTAMP_HEADER
        )


def _hook_time(delivery: Delivery) -> datetime | None:
    """When Sentry sent the webhook (`Sentry-Hook-Timestamp`), if it says so readably."""
    stamp = delivery.headers.get(TIMESTAMP_HEADER.lower(), "").strip()
    if not stamp:
        return None
    try:
        return _sent_at(stamp)
    except SignatureError:
        return None


def _sent_at(stamp: str) -> datetime:
    try:
        seconds = float(stamp) if stamp.isascii() else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise SignatureError(f"{TIMESTAMP_HEADER}: expected Unix seconds, got {stamp[:20]!r}")
    try:
        return parse_time(seconds, field=TIMESTAMP_HEADER)
    except AdapterError as exc:
        raise SignatureError(str(exc)) from None
