"""New Relic alert webhooks: Workflows (the default payload template) and the legacy channel.

Workflows send one issue per delivery: `state` CREATED/ACTIVATED/ACKNOWLEDGED is firing,
CLOSED resolved, and the issue `id` is stable for the issue's life. The legacy alert channel
sends `current_state` open/acknowledged/closed keyed by `account_id` + `incident_id`; its
"Send test notification" uses incident id 0, which is acknowledged as a test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import (
    joined,
    labels_of,
    lookup,
    make_event,
    parse_time,
    refuse_placeholder,
    validate,
)

SOURCE_TYPE = "newrelic"
WORKFLOW = "New Relic Workflows webhook (default payload template)"
LEGACY = "New Relic legacy alert channel webhook"

WORKFLOW_STATUS: dict[str, EventStatus] = {
    "CREATED": EventStatus.FIRING,
    "ACTIVATED": EventStatus.FIRING,
    # Acknowledging does not end the issue: it is still firing.
    "ACKNOWLEDGED": EventStatus.FIRING,
    "CLOSED": EventStatus.RESOLVED,
}
LEGACY_STATUS: dict[str, EventStatus] = {
    "open": EventStatus.FIRING,
    "acknowledged": EventStatus.FIRING,
    "closed": EventStatus.RESOLVED,
}
PRIORITY: dict[str, Severity] = {
    "CRITICAL": Severity.CRITICAL,
    "HIGH": Severity.HIGH,
    "MEDIUM": Severity.WARNING,
    "LOW": Severity.INFO,
}
LEGACY_SEVERITY: dict[str, Severity] = {
    "CRITICAL": Severity.CRITICAL,
    "WARNING": Severity.WARNING,
    "INFO": Severity.INFO,
}

# Handlebars ({{issueId}}) and legacy ($INCIDENT_ID) variables left in a pasted template.
_PLACEHOLDER = re.compile(r"\{\{[^}]*\}\}|\$[A-Z][A-Z_]{2,}\b")


class _Issue(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    state: str
    title: str = ""
    priority: str = "CRITICAL"
    issueUrl: str | None = None
    impactedEntities: list[Any] = Field(default_factory=list)
    totalIncidents: int | None = None
    trigger: str | None = None
    isCorrelated: bool | None = None
    createdAt: int | float | str | None = None
    updatedAt: int | float | str | None = None
    sources: list[Any] = Field(default_factory=list)
    alertPolicyNames: list[Any] = Field(default_factory=list)
    alertConditionNames: list[Any] = Field(default_factory=list)
    workflowName: str | None = None


class _Target(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | int | None = None
    name: str | None = None
    product: str | None = None
    type: str | None = None
    link: str | None = None


class _LegacyIncident(BaseModel):
    model_config = ConfigDict(extra="allow")

    incident_id: int
    account_id: int | str
    current_state: str
    severity: str = "CRITICAL"
    account_name: str | None = None
    policy_name: str | None = None
    condition_name: str | None = None
    condition_id: int | None = None
    details: str | None = None
    incident_url: str | None = None
    runbook_url: str | None = None
    event_type: str | None = None
    targets: list[_Target] = Field(default_factory=list)
    timestamp: int | float | str | None = None


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the delivered issue (Workflows) or incident (legacy channel)."""
    expected = f"{WORKFLOW} or {LEGACY}"
    document = require_object(delivery.json(expected=expected), expected=expected)
    # Only the id and state fields are checked: free text such as `details` may hold a
    # dollar word of its own.
    for name in ("id", "state", "priority", "incident_id", "current_state", "severity"):
        refuse_placeholder(
            document.get(name),
            _PLACEHOLDER,
            name,
            why="this is a template, not a delivery",
            expected=expected,
        )
    if "current_state" in document or "incident_id" in document:
        return [_legacy(delivery, document)]
    return [_workflow(delivery, document)]


def _workflow(delivery: Delivery, document: dict[str, Any]) -> AlertEvent:
    issue = validate(_Issue, document, expected=WORKFLOW)
    status = lookup(WORKFLOW_STATUS, issue.state.upper(), field="state", expected=WORKFLOW)
    severity = lookup(PRIORITY, issue.priority.upper(), field="priority", expected=WORKFLOW)
    # A firing starts when the issue was created; a close happens at its last update.
    when, field = (
        (issue.updatedAt, "updatedAt")
        if status is EventStatus.RESOLVED
        else (issue.createdAt, "createdAt")
    )
    labels = {
        "priority": issue.priority,
        "state": issue.state,
        "trigger": issue.trigger,
        "impacted_entities": joined(issue.impactedEntities),
        "alert_policy_names": joined(issue.alertPolicyNames),
        "alert_condition_names": joined(issue.alertConditionNames),
        "workflow_name": issue.workflowName,
        "sources": joined(issue.sources),
        "total_incidents": issue.totalIncidents,
        "is_correlated": issue.isCorrelated,
    }
    return make_event(
        expected=WORKFLOW,
        source_type=SOURCE_TYPE,
        dedup_key=f"issue:{issue.id}",
        status=status,
        severity=severity,
        summary=issue.title or f"New Relic issue {issue.id}",
        labels=labels_of(labels),
        links=[issue.issueUrl] if issue.issueUrl else [],
        occurred_at=parse_time(when, field=field) if when is not None else delivery.received_at,
        received_at=delivery.received_at,
        raw=document,
    )


def _legacy(delivery: Delivery, document: dict[str, Any]) -> AlertEvent:
    incident = validate(_LegacyIncident, document, expected=LEGACY)
    status = lookup(
        LEGACY_STATUS, incident.current_state.lower(), field="current_state", expected=LEGACY
    )
    severity = lookup(LEGACY_SEVERITY, incident.severity.upper(), field="severity", expected=LEGACY)
    summary = incident.condition_name or f"New Relic incident {incident.incident_id}"
    if incident.details:
        summary = f"{summary}: {incident.details}"
    labels = {
        "account_id": incident.account_id,
        "account_name": incident.account_name,
        "policy_name": incident.policy_name,
        "condition_name": incident.condition_name,
        "condition_id": incident.condition_id,
        "event_type": incident.event_type,
        "severity": incident.severity,
        "targets": joined(t.name for t in incident.targets),
        "target_products": joined(t.product for t in incident.targets),
        "target_types": joined(t.type for t in incident.targets),
    }
    when = incident.timestamp
    occurred_at = parse_time(when, field="timestamp") if when is not None else delivery.received_at
    return make_event(
        expected=LEGACY,
        source_type=SOURCE_TYPE,
        dedup_key=f"incident:{incident.account_id}:{incident.incident_id}",
        status=status,
        severity=severity,
        summary=summary,
        details=incident.details or "",
        labels=labels_of(labels),
        links=[link for link in (incident.incident_url, incident.runbook_url) if link],
        occurred_at=occurred_at,
        received_at=delivery.received_at,
        raw=document,
        # "Send test notification" posts a made-up incident with id 0: acknowledge it.
        test=incident.incident_id == 0,
    )
