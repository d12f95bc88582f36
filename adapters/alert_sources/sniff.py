"""Which tool a delivery looks like, for a source whose own adapter refused it.

A Grafana contact point pointed at an Uptime Kuma source's URL answers "not a valid
uptime-kuma delivery": true, but the operator's mistake is the URL (or the source's type),
and naming the tool the body came from says so. The adapters are pure, so each is simply
asked to parse the body; Grafana's and Alertmanager's bodies share a shape (Grafana's
contact point sends Alertmanager's webhook format, plus fields of its own), told apart by
those fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from . import ADAPTERS, get_adapter
from .base import Delivery

#: How the tools are called in messages.
TOOL_NAMES: dict[str, str] = {
    "alertmanager": "Prometheus Alertmanager",
    "grafana": "Grafana",
    "uptime-kuma": "Uptime Kuma",
    "uptimerobot": "UptimeRobot",
    "datadog": "Datadog",
    "healthchecks": "Healthchecks.io",
    "pagerduty": "PagerDuty",
    "pingdom": "Pingdom",
    "sentry": "Sentry",
    "zabbix": "Zabbix",
    "cloudwatch": "AWS CloudWatch (SNS)",
    "azure-monitor": "Azure Monitor",
    "newrelic": "New Relic",
    "gatus": "Gatus",
    "checkly": "Checkly",
    "betterstack": "Better Stack",
    "generic": "a generic JSON sender",
}
#: Bodies larger than this are not tried against every adapter (each try parses it again).
MAX_SNIFF_BYTES = 256 * 1024
#: Fields Grafana adds to Alertmanager's webhook format.
_GRAFANA_FIELDS = ("orgId", "state", "title", "message")


def tool_name(source_type: str) -> str:
    return TOOL_NAMES.get(source_type, source_type)


def looks_like(delivery: Delivery, settings: Mapping[str, Any], refused_by: str) -> list[str]:
    """The source types whose adapter reads `delivery` (never `refused_by`, nor the generic
    adapter, which reads any JSON), most likely first; empty when none does."""
    if len(delivery.body) > MAX_SNIFF_BYTES:
        return []
    found = []
    for kind in ADAPTERS:
        if kind in (refused_by, "generic"):
            continue
        try:
            if list(get_adapter(kind).parse(delivery, {})):
                found.append(kind)
        except Exception:  # refusing this body is what most adapters will do
            continue
    if {"alertmanager", "grafana"} <= set(found):
        drop = "alertmanager" if _grafana_fields(delivery.body) else "grafana"
        found.remove(drop)
    return found


def hint(delivery: Delivery, settings: Mapping[str, Any], source_type: str) -> str:
    """What to add to a refusal by `source_type`'s adapter when another tool's adapter reads
    the body ("" when none does): the usual mistake is a tool pointed at another source's
    URL, not a broken body."""
    others = looks_like(delivery, settings, source_type)
    if not others:
        return ""
    names = " or ".join(tool_name(kind) for kind in others)
    return (
        f". The body looks like a {names} delivery: is this {tool_name(source_type)} "
        f"source's URL the one meant for it, or is the source's type ({source_type}) wrong?"
    )


def _grafana_fields(body: bytes) -> bool:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and any(f in data for f in _GRAFANA_FIELDS)
