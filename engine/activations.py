"""Activations and claims: what a rule match does over time (DESIGN.md, "Activations").

A match of a firing event starts or joins the *activation* of the rule for the event's
group. An activation is `pending` (waiting for `for` or its `window`), `active` (its claims
hold, its incident is open), `resolving` (every alert resolved, waiting `resolve.after`) or
`ended`. `Machine` is the state machine: it turns events, matches and the passing of time
into `Intent`s -- claim, release, open_incident, attach_alert, resolve_incident, notify,
hold, rule_error -- and keeps its state behind the small `State` interface, so the same code
runs on the store (one transaction per evaluation batch, `workers.evaluate`) and in memory
on a virtual clock (`beacon rules test`, `config.replay`).

Contract with the intake (the evaluation job's input): the intake stores each event in
`alert_events` with `partition` set (the alert source key) and `evaluated_at` null, then
emits an outbox row `evaluate` with `{"partition": ...}`. The evaluator takes the partition's
unevaluated events in id order, evaluates them, writes their `outcome` and `evaluated_at`
in the same transaction as their effects.

Time runs on `received_at` (for, window, resolve.after, resolve.timeout); ordering between a
firing and a resolve of one alert uses the tool's `occurred_at`, and a resolve older than
the firing it would end is ignored.

The rule side is duck-typed (`RulePolicy`): `rules.schema.Rule` satisfies it, so this module
needs nothing from `rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from . import sandbox
from .models import AlertEvent, EventStatus, ServiceStatus, worst_status
from .sandbox import TemplateError


class ActivationState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RESOLVING = "resolving"
    ENDED = "ended"


class IntentKind(StrEnum):
    CLAIM = "claim"
    RELEASE = "release"
    OPEN_INCIDENT = "open_incident"
    ATTACH_ALERT = "attach_alert"
    RESOLVE_INCIDENT = "resolve_incident"
    NOTIFY = "notify"
    HOLD = "hold"
    RULE_ERROR = "rule_error"
    IGNORED = "ignored"


# --- what the machine needs from rules and from the world ----------------------------------


class _Window(Protocol):
    @property
    def count(self) -> int: ...

    @property
    def within(self) -> timedelta: ...


class _Resolve(Protocol):
    @property
    def after(self) -> timedelta: ...

    @property
    def timeout(self) -> timedelta | None: ...

    @property
    def incident(self) -> Any: ...  # "resolve" | "keep"


class _Incident(Protocol):
    @property
    def template(self) -> str: ...

    @property
    def notify(self) -> bool: ...


class RulePolicy(Protocol):
    """The parts of a rule the state machine reads (`rules.schema.Rule` has them)."""

    @property
    def id(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def services(self) -> list[str] | None: ...

    @property
    def service_from(self) -> str | None: ...

    @property
    def for_(self) -> timedelta | None: ...

    @property
    def window(self) -> _Window | None: ...

    @property
    def group_by(self) -> list[str] | None: ...

    @property
    def resolve(self) -> _Resolve: ...

    @property
    def claims(self) -> list[ServiceStatus]: ...

    @property
    def incident(self) -> _Incident | None: ...

    @property
    def channels(self) -> list[str]: ...


@dataclass(frozen=True)
class TemplateSpec:
    """An incident template as the machine renders it."""

    title: str
    message: str = ""
    resolve_message: str = ""
    status: str = "investigating"
    services: Mapping[str, str] = field(default_factory=dict)


class World(Protocol):
    """Read-only facts about the configuration at evaluation time."""

    def team_of(self, source: str) -> str | None: ...

    def service_name(self, team: str, key: str) -> str | None: ...

    def template(self, team: str, key: str) -> TemplateSpec | None: ...

    def has_channel(self, team: str, key: str) -> bool: ...

    def maintenance(self, team: str, service: str, at: datetime) -> str | None:
        """The maintenance window holding `service` at `at`, if any (its key or store id:
        what `State.hold` and the window's end name it by)."""
        ...

    def window_name(self, team: str, window: str) -> str:
        """How a person knows the window `maintenance` gave: its key, else its title."""
        ...


# --- state ---------------------------------------------------------------------------------


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

    def hold(self, window: str, event: AlertEvent, rule_id: str) -> None: ...

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
        self.statuses: dict[AlertKey, tuple[EventStatus, datetime]] = {}
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

    def hold(self, window: str, event: AlertEvent, rule_id: str) -> None:
        self.held.setdefault(window, []).append((event, rule_id))

    def take_held(self, window: str) -> list[tuple[AlertEvent, str]]:
        return self.held.pop(window, [])

    def held_in(self, team: str, source: str, dedup_key: str) -> str | None:
        for window, held in self.held.items():
            if any((e.source, e.dedup_key) == (source, dedup_key) for e, _rule in held):
                return window
        return None

    def last_status(
        self, team: str, source: str, dedup_key: str
    ) -> tuple[EventStatus, datetime] | None:
        return self.statuses.get((source, dedup_key))

    def note_status(self, team: str, event: AlertEvent) -> None:
        key = (event.source, event.dedup_key)
        known = self.statuses.get(key)
        if known is None or event.occurred_at >= known[1]:
            self.statuses[key] = (event.status, event.occurred_at)


# --- intents -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intent:
    """One effect the engine applies (or a replay prints), in the order produced."""

    kind: IntentKind
    at: datetime
    rule_id: str
    team: str
    group_key: str = ""
    activation_id: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The replay's JSON line: stable keys, times in ISO 8601."""
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "intent": str(self.kind),
            "rule": self.rule_id,
            "team": self.team,
            "group": self.group_key,
            **dict(self.data),
        }


@dataclass
class Outcome:
    """What happened to one event: for `alert_events.outcome` and "what happened to my alert?".

    `result` in one word: `matched` (a firing event matched a rule: `effects` say what it
    did), `held` (it matched, and every rule it matched was held by maintenance),
    `applied` (a resolve that resolved an alert in an activation), `ignored` (a resolve
    older than the firing it would end, or a firing older than its alert's resolve: a late
    retry, by the tool's clock), `no_match` (a firing event no rule matched, or a
    resolve of an alert no activation holds firing). `effects` say it in words."""

    matched: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    result: str = "no_match"
    #: Matched rules that ignored a firing older than its alert's resolve (not stored).
    late: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"matched": self.matched, "effects": self.effects, "result": self.result}


# --- the machine ---------------------------------------------------------------------------


class Machine:
    """The activation state machine over `state`, for rules looked up in `policies`."""

    def __init__(self, state: State, world: World, policies: Mapping[str, RulePolicy]) -> None:
        self.state = state
        self.world = world
        self.policies = policies

    # events ------------------------------------------------------------------------------

    def on_event(
        self, event: AlertEvent, matches: Sequence[RulePolicy], team: str | None = None
    ) -> tuple[list[Intent], Outcome]:
        """Apply one event (`matches`: the rules it matched, for a firing event) from a
        source of `team` (looked up by the source key when not given)."""
        outcome = Outcome(matched=[m.id for m in matches])
        intents: list[Intent] = list(self.on_time(event.received_at))
        team = team or self.world.team_of(event.source)
        if team is None:
            outcome.effects.append(f"unknown source {event.source!r}")
            return intents, outcome
        if event.status == EventStatus.RESOLVED:
            intents += self._resolve(team, event, outcome)
        else:
            if not matches:
                outcome.effects.append("no rule matched")
            held = 0
            for policy in matches:
                found = self._fire(team, policy, event, outcome)
                held += any(i.kind == IntentKind.HOLD for i in found)
                intents += found
            if matches:
                outcome.result = "held" if held == len(matches) else "matched"
                if outcome.late == len(matches):
                    # Every rule it matched saw a late firing (a retry after its resolve).
                    outcome.result = "ignored"
        self.state.note_status(team, event)
        return intents, outcome

    def _fire(
        self, team: str, policy: RulePolicy, event: AlertEvent, outcome: Outcome
    ) -> list[Intent]:
        now = event.received_at
        services, error = self._services(team, policy, event)
        if error:
            outcome.effects.append(f"{policy.id}: error: {error}")
            return [Intent(IntentKind.RULE_ERROR, now, policy.id, team, data=_err(error, event))]
        for service in services:
            window = self.world.maintenance(team, service, now)
            if window is not None:
                self.state.hold(window, event, policy.id)
                name = self.world.window_name(team, window)
                outcome.effects.append(f"{policy.id}: held by maintenance {name}")
                return [
                    Intent(
                        IntentKind.HOLD,
                        now,
                        policy.id,
                        team,
                        group_key(policy, event),
                        data={"window": window, "service": service, "alert": event.dedup_key},
                    )
                ]
        group = group_key(policy, event)
        if policy.service_from is not None and policy.group_by:
            # The service is part of the group: one group's activation claims one service.
            group = f"{group}|service={services[0]}"
        last = self.state.last_status(team, event.source, event.dedup_key)
        if last is not None and last[0] == EventStatus.RESOLVED and event.occurred_at < last[1]:
            # A late firing the tool already resolved (by its own clock): nothing to start.
            outcome.effects.append(f"{policy.id}: ignored: firing older than its resolve")
            outcome.late += 1
            return []
        act = self.state.open_for(team, policy.id, group)
        if act is None:
            act = Activation(team, policy.id, group, ActivationState.PENDING, now, services)
            if policy.for_ is not None:
                act.due_at = now + policy.for_
            self.state.save(act)
        key = (event.source, event.dedup_key)
        alert = act.alerts.get(key)
        if alert is not None and not alert.firing and alert.resolved_at is not None:
            if event.occurred_at < alert.last_occurred_at:
                outcome.effects.append(f"{policy.id}: ignored: firing older than its resolve")
                outcome.late += 1
                return []
        is_new = alert is None or not alert.firing
        joins = alert is None
        if alert is None:
            alert = act.alerts[key] = AlertState(True, now, event.occurred_at, None, event.id)
        else:
            alert.firing = True
            alert.last_occurred_at = max(alert.last_occurred_at, event.occurred_at)
            alert.last_event_id = event.id
        act.last_firing_at = now
        if policy.for_ is not None and policy.incident is not None and not act.incident_opened:
            # Its incident will open on the clock, with no event in hand: keep what it
            # renders (bounded: this is written with the activation on every firing).
            act.last_event = {**_event_context(event), "details": event.details[:2000]}
        intents: list[Intent] = []
        if act.state == ActivationState.RESOLVING:
            # Flap damping: back to active with the same claims and incident.
            act.state = ActivationState.ACTIVE
            act.resolving_since = None
            outcome.effects.append(f"{policy.id}: re-fired while resolving")
        if act.state == ActivationState.ACTIVE:
            if joins and act.incident_opened:
                intents.append(self._intent(IntentKind.ATTACH_ALERT, now, act, _alert(event)))
            outcome.effects.append(f"{policy.id}: joined active activation")
        elif act.state == ActivationState.PENDING:
            if policy.window is not None:
                if is_new:
                    act.fires[key] = now
                self._prune(act, policy, now)
                if len(act.fires) >= policy.window.count:
                    intents += self._act(act, policy, event, now)
                else:
                    outcome.effects.append(
                        f"{policy.id}: window {len(act.fires)}/{policy.window.count}"
                    )
            elif policy.for_ is None:
                intents += self._act(act, policy, event, now)
            else:
                outcome.effects.append(f"{policy.id}: pending until {_iso(act.due_at)}")
        self._schedule(act, policy)
        self.state.save(act)
        if act.state == ActivationState.ACTIVE and intents:
            outcome.effects.append(f"{policy.id}: acted: {_said(intents)}")
        return intents

    def _resolve(self, team: str, event: AlertEvent, outcome: Outcome) -> list[Intent]:
        now = event.received_at
        intents: list[Intent] = []
        key = (event.source, event.dedup_key)
        for act in self.state.by_alert(team, *key):
            alert = act.alerts[key]
            if not alert.firing:
                continue
            if event.occurred_at < alert.last_occurred_at:
                outcome.effects.append(f"{act.rule_id}: ignored: resolve older than its firing")
                intents.append(
                    self._intent(IntentKind.IGNORED, now, act, {"alert": event.dedup_key})
                )
                if outcome.result == "no_match":
                    outcome.result = "ignored"
                continue
            outcome.result = "applied"
            alert.firing = False
            alert.resolved_at = now
            alert.last_occurred_at = event.occurred_at
            policy = self.policies.get(act.rule_id)
            if act.any_firing:
                outcome.effects.append(f"{act.rule_id}: alert resolved, others still firing")
            elif act.state == ActivationState.PENDING:
                if policy is None or policy.window is None:
                    intents += self._end(act, policy, now, "resolved before acting")
                    outcome.effects.append(f"{act.rule_id}: ended before acting")
                else:
                    outcome.effects.append(f"{act.rule_id}: resolved; the window keeps its count")
            elif act.state == ActivationState.ACTIVE:
                intents += self._last_resolved(act, policy, now)
                ended = act.state == ActivationState.ENDED
                outcome.effects.append(f"{act.rule_id}: {'ended' if ended else 'resolving'}")
            self._schedule(act, policy)
            self.state.save(act)
        if outcome.result == "no_match":
            window = self.state.held_in(team, *key)
            if window is not None:
                # Nothing to end now; the window's end will not replay this alert.
                name = self.world.window_name(team, window)
                outcome.effects.append(f"resolved while held by maintenance {name}")
        return intents

    # time --------------------------------------------------------------------------------

    def on_time(self, now: datetime) -> list[Intent]:
        """Everything due by `now`, each at its own due time, in due order."""
        intents: list[Intent] = []
        for _ in range(10_000):  # bounded: each pass ends or advances one activation
            due = self.state.due(now)
            if not due:
                break
            act = due[0]
            at = act.due_at or now
            policy = self.policies.get(act.rule_id)
            act.due_at = None
            intents += self._expire(act, policy, at)
            self._schedule(act, policy)
            self.state.save(act)
        return intents

    def _expire(self, act: Activation, policy: RulePolicy | None, at: datetime) -> list[Intent]:
        if act.state == ActivationState.PENDING:
            if policy is not None and policy.window is not None:
                self._prune(act, policy, at)
                if not act.fires:
                    return self._end(act, policy, at, "window expired")
                return []
            if act.any_firing and policy is not None:
                return self._act(act, policy, None, at)
            return self._end(act, policy, at, "resolved before acting")
        if act.state == ActivationState.RESOLVING:
            if (
                policy is None
                or act.resolving_since is None
                or (at >= act.resolving_since + policy.resolve.after)
            ):
                return self._end(act, policy, at, "resolved")
        if act.state == ActivationState.ACTIVE and not act.any_firing:
            # Its firing alerts went without a resolve: their source was deleted (the store
            # makes such an activation due at once). As if the last of them resolved now.
            return self._last_resolved(act, policy, at)
        if act.state in (ActivationState.ACTIVE, ActivationState.RESOLVING):
            timeout = policy.resolve.timeout if policy else None
            if timeout is not None and act.last_firing_at and at >= act.last_firing_at + timeout:
                return self._end(act, policy, at, "timeout")
        return []

    def _last_resolved(
        self, act: Activation, policy: RulePolicy | None, at: datetime
    ) -> list[Intent]:
        """An active activation's last firing alert is gone at `at`: it waits out
        `resolve.after` (flap damping), or ends now."""
        if policy is not None and policy.resolve.after > timedelta(0):
            act.state = ActivationState.RESOLVING
            act.resolving_since = at
            return []
        return self._end(act, policy, at, "resolved")

    def _schedule(self, act: Activation, policy: RulePolicy | None) -> None:
        """Set `act.due_at` to the next time `on_time` must look at it."""
        if act.state == ActivationState.ENDED or policy is None:
            act.due_at = None if act.state == ActivationState.ENDED else act.due_at
            return
        candidates: list[datetime] = []
        if act.state == ActivationState.PENDING:
            if policy.window is not None and act.fires:
                candidates.append(min(act.fires.values()) + policy.window.within)
            elif policy.for_ is not None:
                candidates.append(act.started_at + policy.for_)
        if act.state == ActivationState.RESOLVING and act.resolving_since is not None:
            candidates.append(act.resolving_since + policy.resolve.after)
        if act.state in (ActivationState.ACTIVE, ActivationState.RESOLVING):
            if policy.resolve.timeout is not None and act.last_firing_at is not None:
                candidates.append(act.last_firing_at + policy.resolve.timeout)
        act.due_at = min(candidates) if candidates else None

    @staticmethod
    def _prune(act: Activation, policy: RulePolicy, now: datetime) -> None:
        if policy.window is None:
            return
        start = now - policy.window.within
        for key, at in list(act.fires.items()):
            if at <= start:
                del act.fires[key]

    # maintenance -------------------------------------------------------------------------

    def end_maintenance(
        self, window: str, on_end: str, now: datetime, matches: Any, team: str | None = None
    ) -> list[Intent]:
        """At a window's end: replay held alerts still firing (`on_end: replay`) as if received
        `now`, or drop them. `matches(event)` gives the rules an event matches now."""
        intents: list[Intent] = []
        seen: set[AlertKey] = set()
        for event, _rule_id in self.state.take_held(window):
            key = (event.source, event.dedup_key)
            if on_end != "replay" or key in seen:
                continue
            seen.add(key)
            owner = team or self.world.team_of(event.source) or ""
            last = self.state.last_status(owner, *key)
            if (
                last is not None
                and last[0] == EventStatus.RESOLVED
                and last[1] >= event.occurred_at
            ):
                continue
            replayed = event.model_copy(update={"received_at": now})
            found, _outcome = self.on_event(replayed, matches(replayed), owner)
            intents += found
        return intents

    # acting and ending -------------------------------------------------------------------

    def _act(
        self, act: Activation, policy: RulePolicy, event: AlertEvent | None, now: datetime
    ) -> list[Intent]:
        act.state = ActivationState.ACTIVE
        act.acted_at = now
        act.fires.clear()
        intents: list[Intent] = []
        claims = policy.claims
        if claims:
            status = worst_status(claims)
            for service in act.services:
                intents.append(
                    self._intent(IntentKind.CLAIM, now, act, {"service": service, "status": status})
                )
        incident = policy.incident
        if incident is not None:
            intents.append(self._open_incident(act, policy, incident, event, now))
        for channel in policy.channels:
            intents.append(
                self._intent(
                    IntentKind.NOTIFY,
                    now,
                    act,
                    {"channel": channel, "state": "firing", **(_alert(event) if event else {})},
                )
            )
        return intents

    def _open_incident(
        self,
        act: Activation,
        policy: RulePolicy,
        incident: _Incident,
        event: AlertEvent | None,
        now: datetime,
    ) -> Intent:
        template = self.world.template(act.team, incident.template)
        if template is None:
            message = f"unknown incident template {incident.template!r} in team {act.team!r}"
            act.error = message
            return self._intent(IntentKind.RULE_ERROR, now, act, _err(message, event, act.services))
        context = self._context(act, policy, event)
        try:
            title = render(template.title, context)
            body = render(template.message, context)
        except TemplateError as exc:
            message = f"template {incident.template!r} failed to render: {exc}"
            act.error = message
            return self._intent(IntentKind.RULE_ERROR, now, act, _err(message, event, act.services))
        act.incident_opened = True
        impacts = dict(template.services) or {
            s: str(worst_status(policy.claims or [ServiceStatus.MAJOR_OUTAGE]))
            for s in act.services
        }
        return self._intent(
            IntentKind.OPEN_INCIDENT,
            now,
            act,
            {
                "template": incident.template,
                "title": title,
                "message": body,
                "status": template.status,
                "services": impacts,
                "notify": incident.notify,
                **(_alert(event) if event else {}),
            },
        )

    def _context(
        self, act: Activation, policy: RulePolicy, event: AlertEvent | None, *, latest: bool = True
    ) -> dict[str, Any]:
        """What a template renders: the event in hand, else (with `latest`) the latest firing
        event the activation kept for an incident it opens on the clock, else nothing."""
        services = [
            {"key": key, "name": self.world.service_name(act.team, key) or key}
            for key in act.services
        ]
        context: dict[str, Any] = {
            # Acting on the clock (`for`), there is no event in hand: the latest that joined.
            "event": _event_context(event) if event else (act.last_event or {} if latest else {}),
            "services": services,
            "rule": {"id": policy.id, "description": policy.description},
        }
        if len(services) == 1:
            context["service"] = services[0]
        return context

    def _end(
        self, act: Activation, policy: RulePolicy | None, now: datetime, reason: str
    ) -> list[Intent]:
        acted = act.state in (ActivationState.ACTIVE, ActivationState.RESOLVING)
        act.state = ActivationState.ENDED
        act.ended_at = now
        act.end_reason = reason
        act.due_at = None
        if not acted:
            return []
        intents: list[Intent] = []
        claims = policy.claims if policy is not None else [ServiceStatus.MAJOR_OUTAGE]
        if claims:
            for service in act.services:
                intents.append(
                    self._intent(
                        IntentKind.RELEASE, now, act, {"service": service, "reason": reason}
                    )
                )
        keep = policy is not None and str(policy.resolve.incident) == "keep"
        if act.incident_opened and not keep:
            message = ""
            if policy is not None and policy.incident is not None:
                template = self.world.template(act.team, policy.incident.template)
                text = template.resolve_message if template else ""
                try:
                    # No event ends an activation by itself (timeouts, damping): the
                    # resolve message sees the services and the rule, and an empty event.
                    message = render(text, self._context(act, policy, None, latest=False))
                except TemplateError as exc:
                    message = text
                    error = f"resolve message of {policy.incident.template!r} failed: {exc}"
                    intents.append(
                        self._intent(
                            IntentKind.RULE_ERROR, now, act, _err(error, None, act.services)
                        )
                    )
            intents.append(
                self._intent(
                    IntentKind.RESOLVE_INCIDENT, now, act, {"message": message, "reason": reason}
                )
            )
        for channel in policy.channels if policy is not None else []:
            intents.append(
                self._intent(IntentKind.NOTIFY, now, act, {"channel": channel, "state": "resolved"})
            )
        return intents

    def _services(
        self, team: str, policy: RulePolicy, event: AlertEvent
    ) -> tuple[list[str], str | None]:
        if policy.service_from is not None:
            value = field_value(event, policy.service_from)
            if value is None:
                return [], f"service_from: the event has no {policy.service_from}"
            keys = [value]
        else:
            keys = list(policy.services or [])
        for key in keys:
            if self.world.service_name(team, key) is None:
                return [], f"no service {key!r} in team {team!r}"
        return keys, None

    @staticmethod
    def _intent(kind: IntentKind, at: datetime, act: Activation, data: Mapping[str, Any]) -> Intent:
        return Intent(kind, at, act.rule_id, act.team, act.group_key, act.id, data)


# --- helpers -------------------------------------------------------------------------------


def field_value(event: AlertEvent, path: str) -> str | None:
    """A rule field's value on `event` (`labels.<name>`, dots in the name included)."""
    if path.startswith("labels."):
        return event.labels.get(path[len("labels.") :])
    value = getattr(event, path, None)
    return None if value is None else str(value)


def group_key(policy: RulePolicy, event: AlertEvent) -> str:
    """The activation group of `event` for `policy`: its `group_by` values, else the alert
    (source and dedup key)."""
    if not policy.group_by:
        return f"{event.source}/{event.dedup_key}"
    return "|".join(f"{p}={field_value(event, p) or ''}" for p in policy.group_by)


def _alert(event: AlertEvent) -> dict[str, Any]:
    return {"alert": event.dedup_key, "source": event.source, "event_id": event.id}


def _said(intents: Sequence[Intent]) -> str:
    """What a rule's action did, in words, for the event's outcome ("what happened to my
    alert?"): `api: major_outage; incident 'API down'; notify ops-email`."""
    words: list[str] = []
    for intent in intents:
        data = intent.data
        if intent.kind == IntentKind.CLAIM:
            words.append(f"{data['service']}: {data['status']}")
        elif intent.kind == IntentKind.OPEN_INCIDENT:
            words.append(f"incident {data['title']!r}")
        elif intent.kind == IntentKind.ATTACH_ALERT:
            words.append("alert added to its incident")
        elif intent.kind == IntentKind.NOTIFY:
            words.append(f"notify {data['channel']}")
        elif intent.kind == IntentKind.RULE_ERROR:
            words.append(f"error: {data['message']}")
    return "; ".join(words) or "nothing to do"


def _err(message: str, event: AlertEvent | None, services: Sequence[str] = ()) -> dict[str, Any]:
    """A rule error's data: the event it came with, if any, and the services it concerns
    (so `beacon why` shows an error raised on the clock, with no event in hand)."""
    data: dict[str, Any] = {"message": message, **(_alert(event) if event else {})}
    if services:
        data["services"] = list(services)
    return data


def _event_context(event: AlertEvent) -> dict[str, Any]:
    return {
        "summary": event.summary,
        "details": event.details,
        "severity": str(event.severity),
        "status": str(event.status),
        "source": event.source,
        "source_type": event.source_type,
        "dedup_key": event.dedup_key,
        "labels": dict(event.labels),
        "links": list(event.links),
        "occurred_at": event.occurred_at.isoformat(),
        "received_at": event.received_at.isoformat(),
    }


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render a user's incident template text in the bounded sandbox (`engine.sandbox`:
    strict undefineds, output, time and memory limits, in a child process)."""
    return sandbox.render(text, context)
