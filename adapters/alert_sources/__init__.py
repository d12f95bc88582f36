"""Alert-source adapters: one module per monitoring tool, looked up through `ADAPTERS`.

The registry maps a source `type` (as written in the config file) to the module that
implements it. User input never reaches `importlib` except through this dict's values.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .base import Delivery
from .errors import AdapterError, SignatureError, UnknownAdapterError

ADAPTERS: dict[str, str] = {
    "alertmanager": "adapters.alert_sources.alertmanager",
    "grafana": "adapters.alert_sources.grafana",
    "uptime-kuma": "adapters.alert_sources.uptime_kuma",
    "uptimerobot": "adapters.alert_sources.uptimerobot",
    "datadog": "adapters.alert_sources.datadog",
    "healthchecks": "adapters.alert_sources.healthchecks",
    "pagerduty": "adapters.alert_sources.pagerduty",
    "pingdom": "adapters.alert_sources.pingdom",
    "sentry": "adapters.alert_sources.sentry",
    "zabbix": "adapters.alert_sources.zabbix",
    "cloudwatch": "adapters.alert_sources.cloudwatch",
    "azure-monitor": "adapters.alert_sources.azure_monitor",
    "newrelic": "adapters.alert_sources.newrelic",
    "gatus": "adapters.alert_sources.gatus",
    "checkly": "adapters.alert_sources.checkly",
    "betterstack": "adapters.alert_sources.betterstack",
    "generic": "adapters.alert_sources.generic",
}


def get_adapter(source_type: str) -> ModuleType:
    """The adapter module for `source_type`; `UnknownAdapterError` names the known types."""
    try:
        path = ADAPTERS[source_type]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise UnknownAdapterError(
            f"unknown alert source type {source_type!r} (known: {known})"
        ) from None
    return importlib.import_module(path)


__all__ = [
    "ADAPTERS",
    "AdapterError",
    "Delivery",
    "SignatureError",
    "UnknownAdapterError",
    "get_adapter",
]
