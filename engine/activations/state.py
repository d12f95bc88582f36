"""Activations and where they live: the `State` protocol and its in-memory `MemoryState`.

An activation is `pending` (waiting for `for` or its `window`), `active` (its claims hold,
its incident is open), `resolving` (every alert resolved, waiting `resolve.after`) or
`ended`. The machine (`engine.activations.machine`) changes `Activation`s and hands them
back to its `State`: in memory for replays (`beacon rules test`, `config.replay`), tests and
benchmarks; on the store for Beacon (`engine.activations.store.StoreState`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from ..models import AlertEvent, EventStatus


class ActivationState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RESOLVING = "resolving"
    ENDED = "ended"


AlertKey = tuple[str, str]  # (source, dedup_key)


@dataclass
class AlertState:
    firing: bool
    first_fired_at: datetime
    last_occurred_at: datetime
    resolved_at: datetime | None = None
    last_event_id: str = ""


class Alerts:
    """An activation's alerts by (source, dedup key).

    In memory it holds them all. On the store it holds only those asked for: `load` reads
    one alert's stored state when it is first asked for, and `firing` counts the stored
    alerts that fire (the store keeps that count on the activation), so whether any alert
    still fires needs no other alert. An event then costs the same whether its activation
    groups one alert or a storm of thousands.

    The machine changes the `AlertState`s it is handed in place; `take_touched` gives the
    alerts handed out since it was last called, the only ones a save may have to write."""

    def __init__(
        self, load: Callable[[AlertKey], AlertState | None] | None = None, firing: int = 0
    ) -> None:
        self._load = load
        # None: looked up, and there is no such alert (yet).
        self._known: dict[AlertKey, AlertState | None] = {}
        self._touched: dict[AlertKey, AlertState] = {}
        # Firing alerts that are not touched: whoever holds a touched one may change it, so
        # those are counted when asked, and the rest stay O(1) to count.
        self._firing_untouched = firing

    def get(self, key: AlertKey) -> AlertState | None:
        """The alert of `key`, None if it has not joined the activation."""
        if key in self._touched:
            return self._touched[key]
        if key in self._known:
            alert = self._known[key]
        else:
            alert = self._known[key] = self._load(key) if self._load is not None else None
        if alert is not None:
            self._touch(key, alert)
        return alert

    def __getitem__(self, key: AlertKey) -> AlertState:
        alert = self.get(key)
        if alert is None:
            raise KeyError(key)
        return alert

    def __setitem__(self, key: AlertKey, alert: AlertState) -> None:
        self.get(key)  # what the store holds for `key` must be known before it changes
        self._touched.pop(key, None)  # handed out and replaced: not counted by `_touch`
        self._known[key] = alert
        self._touched[key] = alert

    def _touch(self, key: AlertKey, alert: AlertState) -> None:
        if alert.firing:
            self._firing_untouched -= 1
        self._touched[key] = alert

    def firing(self) -> int:
        """How many of the activation's alerts fire."""
        return self._firing_untouched + sum(1 for a in self._touched.values() if a.firing)

    def take_touched(self) -> list[tuple[AlertKey, AlertState]]:
        """The alerts handed out (and maybe changed) since the last call, in that order."""
        touched = list(self._touched.items())
        self._firing_untouched += sum(1 for _, a in touched if a.firing)
        self._touched.clear()
        return touched

    def known(self) -> Iterator[tuple[AlertKey, AlertState]]:
        """The alerts asked for so far (in memory: all of them), to read, not to change."""
        return ((key, a) for key, a in self._known.items() if a is not None)


@dataclass
class Activation:
    """One rule's activation for one group, with the alerts that joined it."""

    team: str
    rule_id: str
    group_key: str
    state: ActivationState
    started_at: datetime
    services: list[str]
    id: int | None = None
    acted_at: datetime | None = None
    last_firing_at: datetime | None = None
    resolving_since: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    due_at: datetime | None = None
    incident_opened: bool = False
    alerts: Alerts = field(default_factory=Alerts)
    # window: when each distinct alert last started firing (received time)
    fires: dict[AlertKey, datetime] = field(default_factory=dict)
    error: str | None = None
    #: The template context (`event`) of the latest firing event that joined, for a rule
    #: whose incident opens on the clock (`for`): what that incident renders.
    last_event: dict[str, Any] | None = None

    @property
    def any_firing(self) -> bool:
        return self.alerts.firing() > 0

    def spec(self) -> dict[str, Any]:
        """The machine's extra state as JSON (the store's `activations.spec`)."""
        return {
            "services": self.services,
            "resolving_since": _iso(self.resolving_since),
            "due_at": _iso(self.due_at),
            "incident_opened": self.incident_opened,
            "fires": [[s, d, _iso(t)] for (s, d), t in self.fires.items()],
            "event": self.last_event,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class State(Protocol):
    """Where activations live: in memory for replays, in the store for Beacon."""

    def open_for(self, team: str, rule_id: str, group_key: str) -> Activation | None: ...

    def by_alert(self, team: str, source: str, dedup_key: str) -> list[Activation]: ...

    def due(self, now: datetime) -> list[Activation]: ...

    def save(self, activation: Activation) -> None: ...

    def hold(self, team: str, window: str, event: AlertEvent, rule_id: str) -> None: ...

    def take_held(self, window: str) -> list[tuple[AlertEvent, str]]: ...

    def held_in(self, team: str, source: str, dedup_key: str) -> str | None: ...

    def last_status(
        self, team: str, source: str, dedup_key: str
    ) -> tuple[EventStatus, datetime] | None: ...

    def note_status(self, team: str, event: AlertEvent) -> None: ...


class MemoryState:
    """`State` in memory (replays, tests, benchmarks), indexed so each step is O(1)-ish."""

    def __init__(self) -> None:
        self.activations: list[Activation] = []
        self.held: dict[str, list[tuple[AlertEvent, str]]] = {}
        # The team of each held alert, in `held`'s order: alerts are a team's (source keys
        # are unique within a team only), as the store keys them by source id.
        self._held_teams: dict[str, list[str]] = {}
        self.statuses: dict[tuple[str, str, str], tuple[EventStatus, datetime]] = {}
        self._open: dict[tuple[str, str, str], Activation] = {}
        self._by_alert: dict[tuple[str, str, str], dict[int, Activation]] = {}
        self._scheduled: dict[int, Activation] = {}

    def open_for(self, team: str, rule_id: str, group_key: str) -> Activation | None:
        return self._open.get((team, rule_id, group_key))

    def by_alert(self, team: str, source: str, dedup_key: str) -> list[Activation]:
        found = self._by_alert.get((team, source, dedup_key), {})
        return [a for _, a in sorted(found.items()) if a.state != ActivationState.ENDED]

    def due(self, now: datetime) -> list[Activation]:
        return sorted(
            (a for a in self._scheduled.values() if a.due_at is not None and a.due_at <= now),
            key=lambda a: (a.due_at, a.id or 0),
        )

    def next_due(self) -> datetime | None:
        dues = [a.due_at for a in self._scheduled.values() if a.due_at is not None]
        return min(dues) if dues else None

    def save(self, activation: Activation) -> None:
        if activation.id is None:
            activation.id = len(self.activations) + 1
            self.activations.append(activation)
        key = (activation.team, activation.rule_id, activation.group_key)
        ended = activation.state == ActivationState.ENDED
        if ended:
            if self._open.get(key) is activation:
                del self._open[key]
        else:
            self._open[key] = activation
        # Only the alerts this save may concern: a storm's activation is saved once per
        # event, and walking all of its alerts each time made a replay quadratic.
        touched = activation.alerts.take_touched()
        for (source, dedup), _alert in activation.alerts.known() if ended else touched:
            alert_key = (activation.team, source, dedup)
            if ended:
                self._by_alert.get(alert_key, {}).pop(activation.id, None)
            else:
                self._by_alert.setdefault(alert_key, {})[activation.id] = activation
        if activation.due_at is not None and not ended:
            self._scheduled[activation.id] = activation
        else:
            self._scheduled.pop(activation.id, None)

    def hold(self, team: str, window: str, event: AlertEvent, rule_id: str) -> None:
        self.held.setdefault(window, []).append((event, rule_id))
        self._held_teams.setdefault(window, []).append(team)

    def take_held(self, window: str) -> list[tuple[AlertEvent, str]]:
        self._held_teams.pop(window, None)
        return self.held.pop(window, [])

    def held_in(self, team: str, source: str, dedup_key: str) -> str | None:
        for window, held in self.held.items():
            teams = self._held_teams.get(window, [])
            if any(
                (owner, e.source, e.dedup_key) == (team, source, dedup_key)
                for owner, (e, _rule) in zip(teams, held, strict=True)
            ):
                return window
        return None

    def last_status(
        self, team: str, source: str, dedup_key: str
    ) -> tuple[EventStatus, datetime] | None:
        return self.statuses.get((team, source, dedup_key))

    def note_status(self, team: str, event: AlertEvent) -> None:
        key = (team, event.source, event.dedup_key)
        known = self.statuses.get(key)
        if known is None or event.occurred_at >= known[1]:
            self.statuses[key] = (event.status, event.occurred_at)
