"""Pingdom state-change webhooks: a fixed JSON body per check state change.

`current_state` DOWN (uptime checks) or FAILING (transaction checks) fires; UP, SUCCESS or
SUCCESSFUL resolves. The dedup key is `check:<check_id>`; severity comes from
`importance_level` (HIGH critical, LOW warning; critical when absent, as older payloads
have no such field). Pingdom signs nothing: keep the integration key secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.models import AlertEvent, EventStatus, Severity

from .base import Delivery, require_object
from .common import make_event, parse_time, text_labels, validate
from .errors import AdapterError

SOURCE_TYPE = "pingdom"
FORMAT = "Pingdom state-change webhook"

STATES: dict[str, EventStatus] = {
    "DOWN": EventStatus.FIRING,
    "FAILING": EventStatus.FIRING,
    "UP": EventStatus.RESOLVED,
    "SUCCESS": EventStatus.RESOLVED,
    "SUCCESSFUL": EventStatus.RESOLVED,
}
IMPORTANCE_SEVERITY: dict[str, Severity] = {"HIGH": Severity.CRITICAL, "LOW": Severity.WARNING}


class CheckParams(BaseModel):
    """`check_params`: what the check probes."""

    model_config = ConfigDict(extra="allow")

    hostname: str | None = None
    full_url: str | None = None
    port: int | None = None


class StateChange(BaseModel):
    """The state-change webhook body."""

    model_config = ConfigDict(extra="allow")

    check_id: int | str
    check_name: str = ""
    check_type: str | None = None
    check_params: CheckParams = Field(default_factory=CheckParams)
    tags: list[Any] = Field(default_factory=list)
    previous_state: str | None = None
    current_state: str
    importance_level: str | None = None
    state_changed_timestamp: int | None = None
    state_changed_utc_time: str | None = None
    description: str = ""
    long_description: str = ""
    custom_message: str | None = None


def parse(delivery: Delivery, settings: Mapping[str, Any]) -> list[AlertEvent]:
    """One event for the check's new state."""
    document = require_object(delivery.json(expected=FORMAT), expected=FORMAT)
    change = validate(StateChange, document, expected=FORMAT)
    state = change.current_state.upper()
    if state not in STATES:
        raise AdapterError(
            f"current_state: expected one of {', '.join(STATES)}, got "
            f"{change.current_state[:30]!r} ({FORMAT})"
        )
    params = change.check_params
    if change.state_changed_timestamp is not None:
        occurred = parse_time(change.state_changed_timestamp, field="state_changed_timestamp")
    elif change.state_changed_utc_time:
        occurred = parse_time(change.state_changed_utc_time, field="state_changed_utc_time")
    else:
        occurred = delivery.received_at
    return [
        make_event(
            expected=FORMAT,
            source_type=SOURCE_TYPE,
            dedup_key=f"check:{change.check_id}",
            status=STATES[state],
            severity=IMPORTANCE_SEVERITY.get(
                (change.importance_level or "").upper(), Severity.CRITICAL
            ),
            summary=": ".join(p for p in (change.check_name, change.description) if p)
            or f"check {change.check_id} is {state}",
            details=change.long_description,
            labels={
                **text_labels(
                    check_id=change.check_id,
                    check_name=change.check_name,
                    check_type=change.check_type,
                    host=params.hostname,
                    port=params.port,
                    check_url=params.full_url,
                    importance_level=change.importance_level,
                    previous_state=change.previous_state,
                    current_state=change.current_state,
                ),
                **_tags(change.tags),
            },
            links=[params.full_url] if params.full_url else [],
            occurred_at=occurred,
            received_at=delivery.received_at,
            raw=document,
        )
    ]


def _tags(tags: list[Any]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for tag in tags:
        name = tag.get("name") if isinstance(tag, dict) else tag
        if isinstance(name, str) and name:
            labels[f"tag.{name}"] = "true"
    return labels
