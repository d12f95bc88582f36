"""Prometheus Alertmanager webhook (`webhook_config`, payload version 4).

One delivery carries a group of alerts; each alert becomes its own event and its own
`status` decides firing or resolved (the top-level status is `firing` while any alert of the
group fires). Every Alertmanager label becomes a label under its own name and every
annotation becomes `annotation.<name>`. Severity comes from the `severity` label through
`SEVERITY_WORDS`; the dedup key is the alert's `fingerprint`, or for Alertmanager older than
v0.19 (no fingerprint) a hash of its label set, which is what the fingerprint hashes too.

Grafana's unified alerting posts the same alert shape, so `grafana` reuses `AmAlert` and
`event_from_alert`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import (
    is_go_zero_time,
    label_set_hash,
    make_event,
    parse_time,
    prefixed,
    severity_from_word,
    validate,
)

SOURCE_TYPE = "alertmanager"
FORMAT = "Alertmanager webhook v4"

# Where a one-line summary usually lives, best first: an explicit summary (annotation, older
# setups' `message`, or a label some rule authors use) beats the longer description.
SUMMARY_SOURCES = (
    ("annotations", "summary"),
    ("annotations", "message"),
    ("labels", "summary"),
    ("annotations", "description"),
    ("annotations", "title"),
    ("labels", "alertname"),
)


class AmAlert(BaseModel):
    """One alert of an Alertmanager-style group (Alertmanager `template.Alert`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: Any = Field(default=None, alias="startsAt")
    ends_at: Any = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str) -> str:
        if value not in ("firing", "resolved"):
            raise ValueError(f"expected 'firing' or 'resolved', got {value!r}")
        return value

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class AmMessage(BaseModel):
    """The webhook body: the group and its alerts (`notify/webhook.Message`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    alerts: list[dict[str, Any]]
    receiver: str = ""
    group_key: str = Field(default="", alias="groupKey")
    external_url: str = Field(default="", alias="externalURL")


def severity_of(labels: Mapping[str, str]) -> Severity:
    """The `severity` label through the shared word table; critical when absent or unknown,
    since the rule author chose to alert on it."""
    return severity_from_word(labels.get("severity"))


def summary_of(alert: AmAlert) -> str:
    """The first non-empty of `SUMMARY_SOURCES`."""
    for kind, name in SUMMARY_SOURCES:
        value = (alert.annotations if kind == "annotations" else alert.labels).get(name)
        if value:
            return value
    return "alert"


def occurred_at(alert: AmAlert, *, where: str, received_at: datetime) -> datetime:
    """A firing's `startsAt`, a resolve's `endsAt`; the delivery time when the tool left it
    out or sent Go's zero time."""
    if alert.status == "resolved":
        value, name = alert.ends_at, "endsAt"
    else:
        value, name = alert.starts_at, "startsAt"
    if value in (None, ""):
        return received_at
    when = parse_time(value, field=f"{where}.{name}")
    return received_at if is_go_zero_time(when) else when


def event_from_alert(
    raw: dict[str, Any],
    *,
    index: int,
    delivery: Delivery,
    source_type: str,
    expected: str,
    dedup_prefix: str = "",
    extra_labels: Mapping[str, str] | None = None,
    links: list[str] | None = None,
    test: bool = False,
) -> AlertEvent:
    """The event for `alerts[index]` of an Alertmanager-style group: validated, labelled with
    the alert's labels, `annotation.<name>` and `extra_labels` (the alert's own win), keyed
    on its fingerprint (else a hash of its labels) after `dedup_prefix`."""
    where = f"alerts[{index}]"
    alert = validate(AmAlert, raw, expected=expected, where=where)
    # The tool's own labels win over the ones Beacon adds, so a rule sees what the user set.
    labels = {**(extra_labels or {}), **alert.labels, **prefixed("annotation.", alert.annotations)}
    key = alert.fingerprint or f"labels:{label_set_hash(alert.labels)}"
    return make_event(
        expected=expected,
        source_type=source_type,
        dedup_key=f"{dedup_prefix}{key}",
        status=EventStatus(alert.status),
        severity=severity_of(alert.labels),
        summary=summary_of(alert),
        details=alert.annotations.get("description", ""),
        labels=labels,
        links=links if links is not None else [u for u in [alert.generator_url] if u],
        occurred_at=occurred_at(alert, where=where, received_at=delivery.received_at),
        received_at=delivery.received_at,
        raw=raw,
        test=test,
    )


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event per alert of the group, each with its own status."""
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    return [
        event_from_alert(
            raw, index=index, delivery=delivery, source_type=SOURCE_TYPE, expected=FORMAT
        )
        for index, raw in enumerate(alerts_of(document))
    ]


#: The message's text fields, by alias and by name (`AmMessage` takes both).
_MESSAGE_TEXT = ("receiver", "groupKey", "group_key", "externalURL", "external_url")


def alerts_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The group's alerts. A message of the shape Alertmanager sends (a list of objects,
    text where text belongs) is taken as it is; anything else goes through `AmMessage`,
    which accepts it or names the wrong field as it always did. (Validating every message
    copied each alert, and it is the intake's busiest path.)"""
    alerts = document.get("alerts")
    if (
        type(alerts) is list
        and all(type(alert) is dict for alert in alerts)
        and all(type(document.get(name, "")) is str for name in _MESSAGE_TEXT)
    ):
        return alerts
    return validate(AmMessage, document, expected=FORMAT).alerts
