"""Alert-source adapters: one module per monitoring tool, looked up through `ADAPTERS`.

The registry maps a source `type` (as written in the config file) to the module that
implements it. User input never reaches `importlib` except through this dict's values.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.models import readable

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


def source_problems(
    source_type: str, settings: dict[str, Any]
) -> list[tuple[tuple[Any, ...], str]]:
    """Problems with a source's `type` and `settings`, each as (path under the source, message).

    The type must be a key of `adapters.alert_sources.ADAPTERS`; when the adapter module
    defines a `Settings` model, the settings must validate against it.
    """
    if source_type not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        return [(("type",), f"unknown alert source type {source_type!r} (known: {known})")]
    try:
        module = importlib.import_module(ADAPTERS[source_type])
    except ImportError:
        return []  # registered but not installed yet: nothing to check against
    model = getattr(module, "Settings", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    try:
        model.model_validate(settings)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = "unknown field" if err["type"] == "extra_forbidden" else readable(err)
            problems.append((("settings", *err["loc"]), f"settings.{name}: {msg}"))
        return problems
    return []


__all__ = [
    "ADAPTERS",
    "AdapterError",
    "Delivery",
    "SignatureError",
    "UnknownAdapterError",
    "get_adapter",
    "source_problems",
]
