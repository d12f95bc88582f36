"""The activation state machine: what a rule match does over time (DESIGN.md, "Activations").

A match of a firing event starts or joins the *activation* of the rule for the event's
group (`engine.activations.state`). `Machine` turns events, matches and the passing of time
into intents (`engine.activations.intents`) and keeps its state behind the small `State`
interface, so the same code runs on the store (one transaction per evaluation batch,
`workers.evaluate`) and in memory on a virtual clock (`beacon rules test`, `config.replay`).

Contract with the intake (the evaluation job's input): the intake stores each event in
`alert_events` with `partition` set (the alert source key) and `evaluated_at` null, then
emits an outbox row `evaluate` with `{"partition": ...}`. The evaluator takes the partition's
unevaluated events in id order, evaluates them, writes their `outcome` and `evaluated_at`
in the same transaction as their effects.

Time runs on `received_at` (for, window, resolve.after, resolve.timeout); ordering between a
firing and a resolve of one alert uses the tool's `occurred_at`, and a resolve older than
the firing it would end is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict, assert_never

from .. import sandbox
from ..models import AlertEvent, EventStatus, ServiceStatus, worst_status
from ..sandbox import DEFAULT_LIMITS, Limits, TemplateError
from .intents import (
    AlertRef,
    AttachAlert,
    Claim,
    Hold,
    Ignored,
    Intent,
    Notify,
    OpenIncident,
    Release,
    ResolveIncident,
    RuleError,
)
from .policy import RulePolicy, World, _Incident
from .state import Activation, ActivationState, AlertKey, AlertState, State, _iso


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

    def __init__(
        self,
        state: State,
        world: World,
        policies: Mapping[str, RulePolicy],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.state = state
        self.world = world
        self.policies = policies
        #: What one incident template render may take (`Settings.template_limits`).
        self.limits = limits

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
                held += any(isinstance(i, Hold) for i in found)
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
            return [
                RuleError(at=now, rule_id=policy.id, team=team, message=error, alert=_ref(event))
            ]
        for service in services:
            window = self.world.maintenance(team, service, now)
            if window is not None:
                self.state.hold(team, window, event, policy.id)
                name = self.world.window_name(team, window)
                outcome.effects.append(f"{policy.id}: held by maintenance {name}")
                return [
                    Hold(
                        at=now,
                        rule_id=policy.id,
                        team=team,
                        group_key=group_key(policy, event),
                        window=window,
                        service=service,
                        alert=event.dedup_key,
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
                intents.append(AttachAlert(**_about(act, now), alert=AlertRef.of(event)))
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
                intents.append(Ignored(**_about(act, now), alert=event.dedup_key))
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

    def on_time(
        self, now: datetime, watch: Callable[[Activation | None], None] | None = None
    ) -> list[Intent]:
        """Everything due by `now`, each at its own due time, in due order. `watch` is told
        which activation each step works on (None while the state reads what is due), so
        that a caller can tell whose step raised (`workers.evaluate.tick`)."""
        intents: list[Intent] = []
        for _ in range(10_000):  # bounded: each pass ends or advances one activation
            if watch is not None:
                watch(None)
            due = self.state.due(now)
            if not due:
                break
            act = due[0]
            if watch is not None:
                watch(act)
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
                intents.append(Claim(**_about(act, now), service=service, status=status))
        incident = policy.incident
        if incident is not None:
            intents.append(self._open_incident(act, policy, incident, event, now))
        for channel in policy.channels:
            intents.append(
                Notify(**_about(act, now), channel=channel, state="firing", alert=_ref(event))
            )
        return intents

    def _open_incident(
        self,
        act: Activation,
        policy: RulePolicy,
        incident: _Incident,
        event: AlertEvent | None,
        now: datetime,
    ) -> OpenIncident | RuleError:
        template = self.world.template(act.team, incident.template)
        if template is None:
            message = f"unknown incident template {incident.template!r} in team {act.team!r}"
            act.error = message
            return _error(act, now, message, event)
        context = self._context(act, policy, event)
        try:
            title = render(template.title, context, self.limits)
            body = render(template.message, context, self.limits)
        except TemplateError as exc:
            message = f"template {incident.template!r} failed to render: {exc}"
            act.error = message
            return _error(act, now, message, event)
        act.incident_opened = True
        impacts = dict(template.services) or {
            s: str(worst_status(policy.claims or [ServiceStatus.MAJOR_OUTAGE]))
            for s in act.services
        }
        return OpenIncident(
            **_about(act, now),
            template=incident.template,
            title=title,
            message=body,
            status=template.status,
            services=impacts,
            notify=incident.notify,
            alert=_ref(event),
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
                intents.append(Release(**_about(act, now), service=service, reason=reason))
        keep = policy is not None and str(policy.resolve.incident) == "keep"
        if act.incident_opened and not keep:
            message = ""
            if policy is not None and policy.incident is not None:
                template = self.world.template(act.team, policy.incident.template)
                text = template.resolve_message if template else ""
                try:
                    # No event ends an activation by itself (timeouts, damping): the
                    # resolve message sees the services and the rule, and an empty event.
                    context = self._context(act, policy, None, latest=False)
                    message = render(text, context, self.limits)
                except TemplateError as exc:
                    message = text
                    error = f"resolve message of {policy.incident.template!r} failed: {exc}"
                    intents.append(_error(act, now, error, None))
            intents.append(ResolveIncident(**_about(act, now), message=message, reason=reason))
        for channel in policy.channels if policy is not None else []:
            intents.append(Notify(**_about(act, now), channel=channel, state="resolved"))
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


class _About(TypedDict):
    at: datetime
    rule_id: str
    team: str
    group_key: str
    activation_id: int | None


def _about(act: Activation, at: datetime) -> _About:
    """What an intent of activation `act` at `at` is about."""
    return {
        "at": at,
        "rule_id": act.rule_id,
        "team": act.team,
        "group_key": act.group_key,
        "activation_id": act.id,
    }


def _ref(event: AlertEvent | None) -> AlertRef | None:
    return AlertRef.of(event) if event is not None else None


def _error(act: Activation, at: datetime, message: str, event: AlertEvent | None) -> RuleError:
    """A rule error of `act`, with the services it concerns."""
    return RuleError(
        **_about(act, at), message=message, alert=_ref(event), services=tuple(act.services)
    )


def _said(intents: Sequence[Intent]) -> str:
    """What a rule's action did, in words, for the event's outcome ("what happened to my
    alert?"): `api: major_outage; incident 'API down'; notify ops-email`."""
    words: list[str] = []
    for intent in intents:
        match intent:
            case Claim():
                words.append(f"{intent.service}: {intent.status}")
            case OpenIncident():
                words.append(f"incident {intent.title!r}")
            case AttachAlert():
                words.append("alert added to its incident")
            case Notify():
                words.append(f"notify {intent.channel}")
            case RuleError():
                words.append(f"error: {intent.message}")
            case Release() | ResolveIncident() | Hold() | Ignored():
                pass  # not what a firing event's action does
            case _:
                assert_never(intent)
    return "; ".join(words) or "nothing to do"


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


def render(text: str, context: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> str:
    """Render a user's incident template text in the bounded sandbox (`engine.sandbox`:
    strict undefineds, output, time and memory limits, in a child process)."""
    return sandbox.render(text, context, limits)
