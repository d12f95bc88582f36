"""Activations and claims: what a rule match does over time (DESIGN.md, "Activations").

- `machine`: `Machine`, the state machine (events, matches and time in; intents and an
  `Outcome` out);
- `intents`: the intents, a closed union of frozen dataclasses;
- `policy`: what the machine reads of a rule (`RulePolicy`) and of the configuration
  (`World`);
- `state`: `Activation` and its alerts, the `State` protocol and `MemoryState` (replays,
  tests);
- `store`: `StoreState`, the `State` on the store, in the caller's transaction;
- `lookups`: `Ids` (key <-> id within one transaction), `StoreWorld`, stored events;
- `apply`: `apply_intents`, intents into claims, incidents, rule errors and outbox rows;
- `claims`: claim maintenance behind the write functions (`forget_source_alerts`,
  `release_claim`, `recount_firing_alerts`).

This package imports only the pure part (the machine, its intents, policy and state);
the store modules are imported by name where they are used.
"""

from .intents import (
    AlertRef,
    AttachAlert,
    Claim,
    Hold,
    Ignored,
    Intent,
    IntentKind,
    Notify,
    OpenIncident,
    Release,
    ResolveIncident,
    RuleError,
)
from .machine import Machine, Outcome, TemplateError, field_value, group_key, render
from .policy import RulePolicy, TemplateSpec, World
from .state import (
    Activation,
    ActivationState,
    AlertKey,
    Alerts,
    AlertState,
    MemoryState,
    State,
)

__all__ = [
    "Activation",
    "ActivationState",
    "AlertKey",
    "AlertRef",
    "AlertState",
    "Alerts",
    "AttachAlert",
    "Claim",
    "Hold",
    "Ignored",
    "Intent",
    "IntentKind",
    "Machine",
    "MemoryState",
    "Notify",
    "OpenIncident",
    "Outcome",
    "Release",
    "ResolveIncident",
    "RuleError",
    "RulePolicy",
    "State",
    "TemplateError",
    "TemplateSpec",
    "World",
    "field_value",
    "group_key",
    "render",
]
