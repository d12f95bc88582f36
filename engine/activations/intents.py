"""What the activation machine decides, as a closed set of frozen dataclasses.

Every effect the machine produces is one of the classes of `Intent`; the store applies
them with an exhaustive `match` (`engine.activations.apply`), so a new kind that is not
applied is a mypy error, not a silent skip, and a replay prints them (`to_json`, the lines
of `beacon rules test`). Each carries what it is about (rule, team, group, activation)
and, as typed fields, what it needs; nothing is read back by string key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from ..models import AlertEvent, ServiceStatus


class IntentKind(StrEnum):
    """An intent's name in a replay's JSON line (`"intent": ...`)."""

    CLAIM = "claim"
    RELEASE = "release"
    OPEN_INCIDENT = "open_incident"
    ATTACH_ALERT = "attach_alert"
    RESOLVE_INCIDENT = "resolve_incident"
    NOTIFY = "notify"
    HOLD = "hold"
    RULE_ERROR = "rule_error"
    IGNORED = "ignored"


@dataclass(frozen=True)
class AlertRef:
    """The event an intent came with: its alert (dedup key), source and event id."""

    alert: str
    source: str
    event_id: str

    @classmethod
    def of(cls, event: AlertEvent) -> AlertRef:
        return cls(event.dedup_key, event.source, event.id)

    @property
    def stored_event_id(self) -> int | None:
        """The `alert_events` id, when the event is a stored one (a replay's are not)."""
        return int(self.event_id) if self.event_id.isdigit() else None

    def to_json(self) -> dict[str, Any]:
        return {"alert": self.alert, "source": self.source, "event_id": self.event_id}


def _ref(alert: AlertRef | None) -> dict[str, Any]:
    return alert.to_json() if alert is not None else {}


@dataclass(frozen=True, kw_only=True)
class _Intent(ABC):
    """What every intent carries: when, and which rule's activation of which group."""

    kind: ClassVar[IntentKind]
    at: datetime
    rule_id: str
    team: str
    group_key: str = ""
    activation_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The replay's JSON line: stable keys, times in ISO 8601."""
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "intent": str(self.kind),
            "rule": self.rule_id,
            "team": self.team,
            "group": self.group_key,
            **self.fields(),
        }

    @abstractmethod
    def fields(self) -> dict[str, Any]:
        """This kind's own fields, in the order a replay prints them."""


@dataclass(frozen=True, kw_only=True)
class Claim(_Intent):
    """The activation claims `status` for `service` (until its `Release`)."""

    kind: ClassVar[IntentKind] = IntentKind.CLAIM
    service: str
    status: ServiceStatus

    def fields(self) -> dict[str, Any]:
        return {"service": self.service, "status": self.status}


@dataclass(frozen=True, kw_only=True)
class Release(_Intent):
    """The activation's claim on `service` ends, for `reason`."""

    kind: ClassVar[IntentKind] = IntentKind.RELEASE
    service: str
    reason: str

    def fields(self) -> dict[str, Any]:
        return {"service": self.service, "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class OpenIncident(_Intent):
    """Open the activation's incident from `template`, rendered."""

    kind: ClassVar[IntentKind] = IntentKind.OPEN_INCIDENT
    template: str
    title: str
    message: str
    status: str
    #: Service key -> impact (a service status).
    services: Mapping[str, str]
    notify: bool
    alert: AlertRef | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "title": self.title,
            "message": self.message,
            "status": self.status,
            "services": dict(self.services),
            "notify": self.notify,
            **_ref(self.alert),
        }


@dataclass(frozen=True, kw_only=True)
class AttachAlert(_Intent):
    """An alert joined an activation whose incident is open: link it to the incident."""

    kind: ClassVar[IntentKind] = IntentKind.ATTACH_ALERT
    alert: AlertRef

    def fields(self) -> dict[str, Any]:
        return self.alert.to_json()


@dataclass(frozen=True, kw_only=True)
class ResolveIncident(_Intent):
    """Resolve the activation's incident with `message` (unless a person took it over)."""

    kind: ClassVar[IntentKind] = IntentKind.RESOLVE_INCIDENT
    message: str
    reason: str

    def fields(self) -> dict[str, Any]:
        return {"message": self.message, "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class Notify(_Intent):
    """Tell the team's channel that the activation is `state` (firing or resolved)."""

    kind: ClassVar[IntentKind] = IntentKind.NOTIFY
    channel: str
    state: str
    alert: AlertRef | None = None

    def fields(self) -> dict[str, Any]:
        return {"channel": self.channel, "state": self.state, **_ref(self.alert)}


@dataclass(frozen=True, kw_only=True)
class Hold(_Intent):
    """A firing alert held by maintenance window `window` on `service` (the state keeps
    it; the window's end replays or drops it). Nothing to apply."""

    kind: ClassVar[IntentKind] = IntentKind.HOLD
    window: str
    service: str
    alert: str

    def fields(self) -> dict[str, Any]:
        return {"window": self.window, "service": self.service, "alert": self.alert}


@dataclass(frozen=True, kw_only=True)
class RuleError(_Intent):
    """The rule could not do what it says (`message`), with the event it came with, if
    any, and the services it concerns (so `beacon why` finds one raised on the clock)."""

    kind: ClassVar[IntentKind] = IntentKind.RULE_ERROR
    message: str
    alert: AlertRef | None = None
    services: tuple[str, ...] = field(default=())

    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, **_ref(self.alert)}
        if self.services:
            data["services"] = list(self.services)
        return data


@dataclass(frozen=True, kw_only=True)
class Ignored(_Intent):
    """A resolve older than the firing it would end (by the tool's clock). Nothing to
    apply: the event's outcome says it."""

    kind: ClassVar[IntentKind] = IntentKind.IGNORED
    alert: str

    def fields(self) -> dict[str, Any]:
        return {"alert": self.alert}


#: Every intent the machine produces: a closed union, matched exhaustively.
Intent = (
    Claim
    | Release
    | OpenIncident
    | AttachAlert
    | ResolveIncident
    | Notify
    | Hold
    | RuleError
    | Ignored
)
