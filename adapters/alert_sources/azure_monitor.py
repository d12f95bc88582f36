"""Azure Monitor action-group webhooks in the common alert schema.

One delivery is one alert instance. `data.essentials.monitorCondition` tells `Fired` from
`Resolved`; `data.essentials.alertId` (the alert instance's ARM id) is the same on both, so
it is the dedup key. Deliveries in the per-signal legacy schemas are refused with a message
asking for the common schema: their shapes differ per signal and they are deprecated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import joined, lookup, make_event, parse_time, validate
from .errors import AdapterError

SOURCE_TYPE = "azure-monitor"
FORMAT = "Azure Monitor common alert schema"
COMMON_SCHEMA = "azureMonitorCommonAlertSchema"

# Azure's own names: Sev0 Critical, Sev1 Error, Sev2 Warning, Sev3 Informational, Sev4 Verbose.
SEVERITY: dict[str, Severity] = {
    "Sev0": Severity.CRITICAL,
    "Sev1": Severity.HIGH,
    "Sev2": Severity.WARNING,
    "Sev3": Severity.INFO,
    "Sev4": Severity.INFO,
}

STATUS: dict[str, EventStatus] = {"Fired": EventStatus.FIRING, "Resolved": EventStatus.RESOLVED}


class _Essentials(BaseModel):
    model_config = ConfigDict(extra="allow")

    alertId: str = Field(min_length=1)
    alertRule: str = ""
    severity: str
    signalType: str = ""
    monitorCondition: str
    monitoringService: str = ""
    alertTargetIDs: list[str] = Field(default_factory=list)
    configurationItems: list[str] = Field(default_factory=list)
    originAlertId: str | None = None
    firedDateTime: str | None = None
    resolvedDateTime: str | None = None
    description: str | None = None
    alertRuleID: str | None = None
    investigationLink: str | None = None
    targetResourceType: str | None = None
    targetResourceGroup: str | None = None


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")

    essentials: _Essentials
    alertContext: dict[str, Any] | None = None
    customProperties: dict[str, Any] | None = None


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    schemaId: str
    data: _Data


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the delivered alert instance; an `AdapterError` names the wrong field."""
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    schema = document.get("schemaId")
    if schema != COMMON_SCHEMA:
        raise AdapterError(
            f"schemaId: expected {COMMON_SCHEMA!r}, got {schema!r}: enable the common alert "
            f"schema on the action group's webhook action ({FORMAT})"
        )
    payload = validate(_Payload, document, expected=FORMAT)
    essentials = payload.data.essentials
    status = lookup(
        STATUS,
        essentials.monitorCondition,
        field="data.essentials.monitorCondition",
        expected=FORMAT,
    )
    severity = lookup(
        SEVERITY, essentials.severity, field="data.essentials.severity", expected=FORMAT
    )
    if status is EventStatus.RESOLVED:
        when, field = essentials.resolvedDateTime, "data.essentials.resolvedDateTime"
    else:
        when, field = essentials.firedDateTime, "data.essentials.firedDateTime"
    occurred_at = parse_time(when, field=field) if when else delivery.received_at
    summary = essentials.alertRule or essentials.alertId
    if essentials.description:
        summary = f"{summary}: {essentials.description}"
    context = payload.data.alertContext or {}
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=essentials.alertId,
            status=status,
            severity=severity,
            summary=summary,
            details=_details(context),
            labels=_labels(essentials, context, payload.data.customProperties),
            links=_links(essentials, context),
            occurred_at=occurred_at,
            received_at=delivery.received_at,
            raw=document,
        )
    ]


def _labels(
    essentials: _Essentials, context: Mapping[str, Any], custom: Mapping[str, Any] | None
) -> dict[str, Any]:
    labels: dict[str, Any] = {
        "alert_rule": essentials.alertRule,
        "alert_rule_id": essentials.alertRuleID,
        "azure_severity": essentials.severity,
        "signal_type": essentials.signalType,
        "monitoring_service": essentials.monitoringService,
        "target_resource": joined(essentials.alertTargetIDs),
        "configuration_items": joined(essentials.configurationItems),
        "target_resource_type": essentials.targetResourceType,
        "target_resource_group": essentials.targetResourceGroup,
        "origin_alert_id": essentials.originAlertId,
        "condition_type": context.get("conditionType"),
    }
    # Rule authors attach their own routing data as custom properties: keep every one.
    for source in (context.get("properties"), custom):
        if isinstance(source, Mapping):
            labels.update({f"property.{name}": value for name, value in source.items()})
    return {name: value for name, value in labels.items() if value not in (None, "")}


def _details(context: Mapping[str, Any]) -> str:
    condition = context.get("condition")
    if not isinstance(condition, Mapping) or not isinstance(condition.get("allOf"), list):
        return ""
    lines = []
    for item in condition["allOf"]:
        if not isinstance(item, Mapping):
            continue
        what = item.get("metricName") or item.get("searchQuery") or "condition"
        lines.append(
            f"{what} {item.get('operator', '')} {item.get('threshold', '')}"
            f" (value {item.get('metricValue')})".replace("  ", " ")
        )
    return "\n".join(lines)


def _links(essentials: _Essentials, context: Mapping[str, Any]) -> list[str]:
    links = [essentials.investigationLink] if essentials.investigationLink else []
    condition = context.get("condition")
    if isinstance(condition, Mapping) and isinstance(condition.get("allOf"), list):
        for item in condition["allOf"]:
            if isinstance(item, Mapping) and isinstance(item.get("linkToSearchResultsUI"), str):
                links.append(item["linkToSearchResultsUI"])
    return links
