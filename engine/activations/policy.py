"""What the activation machine needs from the rules and from the world, as protocols.

The rule side is duck-typed (`RulePolicy`): `rules.schema.Rule` satisfies it, so the
machine needs nothing from `rules`. `World` answers questions about the configuration at
evaluation time: from the store (`engine.activations.lookups.StoreWorld`) or from a
config file (`config.world.ConfigWorld`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..models import ServiceStatus


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
