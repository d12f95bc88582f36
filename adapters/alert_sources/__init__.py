"""Alert-source adapters: one module per monitoring tool, looked up through `ADAPTERS`.

The registry maps a source `type` (as written in the config file) to the module that
implements it. User input never reaches `importlib` except through this dict's values.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from pydantic import BaseModel, ValidationError

from engine.models import readable

from .base import AlertSource, Delivery, SignedAlertSource, SnsAlertSource
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


if TYPE_CHECKING:
    # mypy checks every registered module against the protocol it claims (the registry
    # itself imports them lazily, by name).
    from . import (
        alertmanager,
        azure_monitor,
        betterstack,
        checkly,
        cloudwatch,
        datadog,
        gatus,
        generic,
        grafana,
        healthchecks,
        newrelic,
        pagerduty,
        pingdom,
        sentry,
        uptime_kuma,
        uptimerobot,
        zabbix,
    )

    _UNSIGNED: tuple[AlertSource, ...] = (
        alertmanager,
        azure_monitor,
        betterstack,
        datadog,
        gatus,
        generic,
        healthchecks,
        newrelic,
        pingdom,
        uptime_kuma,
        uptimerobot,
        zabbix,
    )
    _SIGNED: tuple[SignedAlertSource, ...] = (checkly, grafana, pagerduty, sentry)
    _SNS: tuple[SnsAlertSource, ...] = (cloudwatch,)


#: Adapters found so far, by type, with the module path they were found at (the registry
#: is a plain dict, which a test may change): `get_adapter` runs for every delivery, and
#: finding the module through `importlib` each time cost 2-3 % of the intake's CPU.
_FOUND: dict[str, tuple[str, AlertSource]] = {}


def get_adapter(source_type: str) -> AlertSource:
    """The adapter module for `source_type`; `UnknownAdapterError` names the known types."""
    found = _FOUND.get(source_type)
    if found is not None and found[0] == ADAPTERS.get(source_type):
        return found[1]
    try:
        path = ADAPTERS[source_type]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise UnknownAdapterError(
            f"unknown alert source type {source_type!r} (known: {known})"
        ) from None
    module = importlib.import_module(path)
    # mypy checks the registered modules (the list above); this catches one added without it.
    if not _traits(module)[0]:
        raise UnknownAdapterError(f"{path} is not an alert-source adapter (SOURCE_TYPE, parse)")
    adapter = cast(AlertSource, module)
    _FOUND[source_type] = (path, adapter)
    return adapter


def signed(adapter: AlertSource) -> SignedAlertSource | None:
    """`adapter` as a signature checker, when its tool signs deliveries with a secret."""
    # `verify` alone decides: a signing adapter must never pass for an unsigned one.
    return cast(SignedAlertSource, adapter) if _traits(adapter)[1] else None


def sns(adapter: AlertSource) -> SnsAlertSource | None:
    """`adapter` as an SNS source, when its deliveries come through AWS SNS."""
    return cast(SnsAlertSource, adapter) if _traits(adapter)[2] else None


_TRAITS: dict[int, tuple[object, bool, bool, bool]] = {}
_TRAITS_MAX = 1000


def _traits(adapter: object) -> tuple[bool, bool, bool]:
    """Whether `adapter` is an adapter, one that signs, one behind SNS: found once per
    object. A runtime Protocol check walks every member of the protocol each time (about a
    tenth of the intake's CPU per delivery when three ran for each), and an adapter
    module's members do not change. The object is kept with its answer, so a recycled
    `id` is never taken for it."""
    hit = _TRAITS.get(id(adapter))
    if hit is not None and hit[0] is adapter:
        return hit[1], hit[2], hit[3]
    found = (
        isinstance(adapter, AlertSource),
        isinstance(adapter, _Verifies),
        isinstance(adapter, SnsAlertSource),
    )
    if len(_TRAITS) >= _TRAITS_MAX:
        _TRAITS.clear()
    _TRAITS[id(adapter)] = (adapter, *found)
    return found


@runtime_checkable
class _Verifies(Protocol):
    def verify(
        self, delivery: Delivery, secret: str, settings: Mapping[str, Any], now: datetime
    ) -> None: ...


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
    "AlertSource",
    "Delivery",
    "SignatureError",
    "SignedAlertSource",
    "SnsAlertSource",
    "UnknownAdapterError",
    "get_adapter",
    "signed",
    "sns",
    "source_problems",
]
