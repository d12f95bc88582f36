"""Grafana alerting webhooks: unified alerting (Grafana 8+) and legacy dashboard alerts.

Unified alerting posts an Alertmanager-style group; each alert becomes an event exactly as
for `alertmanager` (labels under their own names, annotations as `annotation.<name>`), plus
`grafana_rule_uid` (from `generatorURL`) and `grafana_org_id`. The dedup key is
`<orgId>:<fingerprint>`, since fingerprints hash only the labels and two organisations of
one Grafana can share a label set. The contact point's Test button sends alertname
`TestAlert`: a test event.

Legacy (pre-11) dashboard alerting posts one rule state (`state`, `ruleId`, `evalMatches`);
`ruleId` 0 is Grafana's own test notification.

Signatures: optional HMAC-SHA256 of the raw body in `X-Grafana-Alerting-Signature` (name
configurable), with an optional timestamp header whose value prefixes the signed text as
`<ts>:` and which must be within `max_skew_seconds` of now.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .alertmanager import event_from_alert
from .base import Delivery, require_object
from .common import (
    hmac_sha256_hex,
    make_event,
    require_hex_signature,
    text_labels,
    validate,
)
from .errors import AdapterError, SignatureError

SOURCE_TYPE = "grafana"
FORMAT = "Grafana alerting webhook"
LEGACY_FORMAT = "Grafana legacy alerting webhook"

_RULE_UID = re.compile(r"/alerting/(?:grafana/)?([^/?#]+)/(?:view|edit)")

# Legacy rule states: which ones are alerts and how they are told apart.
LEGACY_STATUS: dict[str, EventStatus] = {
    "alerting": EventStatus.FIRING,
    "no_data": EventStatus.FIRING,
    "ok": EventStatus.RESOLVED,
}
LEGACY_IGNORED = frozenset({"paused", "pending"})
LEGACY_SEVERITY: dict[str, Severity] = {
    "alerting": Severity.CRITICAL,
    "no_data": Severity.WARNING,
    "ok": Severity.CRITICAL,
}


class Settings(BaseModel):
    """Adapter settings of a Grafana alert source."""

    model_config = ConfigDict(extra="forbid")

    signature_header: str = Field(default="X-Grafana-Alerting-Signature", min_length=1)
    timestamp_header: str | None = Field(default=None, min_length=1)
    max_skew_seconds: int = Field(default=300, ge=1, le=86400)


class UnifiedMessage(BaseModel):
    """The unified-alerting body: an Alertmanager-style group plus `orgId`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    alerts: list[dict[str, Any]]
    org_id: int | None = Field(default=None, alias="orgId")


class LegacyMessage(BaseModel):
    """The legacy dashboard-alert body: one rule and its state."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    state: str
    title: str = ""
    message: str = ""
    rule_id: int | None = Field(default=None, alias="ruleId")
    rule_name: str = Field(default="", alias="ruleName")
    rule_url: str = Field(default="", alias="ruleUrl")
    org_id: int = Field(default=0, alias="orgId")
    dashboard_id: int = Field(default=0, alias="dashboardId")
    panel_id: int = Field(default=0, alias="panelId")
    tags: dict[str, str] | None = None


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event per alert (unified), or one for the rule's state (legacy)."""
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    if "alerts" not in document and "state" in document:
        return _legacy(document, delivery)
    message = validate(UnifiedMessage, document, expected=FORMAT)
    events = []
    for index, raw in enumerate(message.alerts):
        org_id = raw.get("orgId", message.org_id)
        generator = raw.get("generatorURL")
        uid = _RULE_UID.search(generator) if isinstance(generator, str) else None
        labels = raw.get("labels")
        alertname = labels.get("alertname") if isinstance(labels, dict) else None
        events.append(
            event_from_alert(
                raw,
                index=index,
                delivery=delivery,
                source_type=SOURCE_TYPE,
                expected=FORMAT,
                dedup_prefix=f"{org_id}:" if isinstance(org_id, int) else "",
                extra_labels=text_labels(
                    grafana_rule_uid=uid.group(1) if uid else None, grafana_org_id=org_id
                ),
                links=_links(raw),
                test=alertname == "TestAlert",
            )
        )
    return events


def _links(raw: Mapping[str, Any]) -> list[str]:
    names = ("generatorURL", "dashboardURL", "panelURL")
    return [raw[n] for n in names if isinstance(raw.get(n), str) and raw[n]]


def _legacy(document: dict[str, Any], delivery: Delivery) -> list[AlertEvent]:
    message = validate(LegacyMessage, document, expected=LEGACY_FORMAT)
    if message.state in LEGACY_IGNORED:
        # Rule bookkeeping, not alert states: acknowledged without an event.
        return []
    status = LEGACY_STATUS.get(message.state)
    if status is None:
        known = ", ".join(sorted({*LEGACY_STATUS, *LEGACY_IGNORED}))
        raise AdapterError(
            f"state: expected one of {known}, got {message.state[:40]!r} ({LEGACY_FORMAT})"
        )
    labels = {
        **text_labels(
            alertname=message.rule_name,
            grafana_rule_id=message.rule_id,
            grafana_dashboard_id=message.dashboard_id,
            grafana_panel_id=message.panel_id,
            grafana_org_id=message.org_id,
        ),
        **(message.tags or {}),
    }
    rule_id = message.rule_id or 0
    key = f"legacy:{message.org_id}:{message.dashboard_id}:{message.panel_id}:{rule_id}"
    return [
        make_event(
            expected=LEGACY_FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=key,
            status=status,
            severity=LEGACY_SEVERITY[message.state],
            summary=message.title or message.rule_name or "Grafana alert",
            details=message.message,
            labels=labels,
            links=[message.rule_url] if message.rule_url else [],
            # The legacy body carries no time: the delivery's is the closest we have.
            occurred_at=delivery.received_at,
            received_at=delivery.received_at,
            raw=document,
            # Real rules have database ids from 1; the Test button sends rule id 0.
            test=message.rule_id == 0,
        )
    ]


def verify(delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime) -> None:
    """Accept only a body signed with `secret`, and with a timestamp header (when configured)
    within `max_skew_seconds` of `now`; else `SignatureError`."""
    config = validate(Settings, dict(settings), expected="Grafana adapter settings")
    header = config.signature_header
    given = delivery.headers.get(header.lower())
    if not given:
        raise SignatureError(f"missing signature header {header}")
    message = delivery.body
    if config.timestamp_header:
        message = _timestamp(delivery, config, now).encode() + b":" + delivery.body
    require_hex_signature(hmac_sha256_hex(secret, message), given, header=header)


def _timestamp(delivery: Delivery, config: Settings, now: datetime) -> str:
    name = config.timestamp_header or ""
    value = delivery.headers.get(name.lower(), "").strip()
    if not value:
        raise SignatureError(f"missing timestamp header {name}")
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise SignatureError(f"timestamp header {name}: expected Unix seconds, got {value[:20]!r}")
    skew = abs(now.timestamp() - int(value))
    if skew > config.max_skew_seconds:
        raise SignatureError(
            f"timestamp header {name} is {int(skew)} s from now "
            f"(allowed {config.max_skew_seconds} s): stale or replayed delivery"
        )
    return value
