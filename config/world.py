"""The configuration a replay or a `rules check` runs against, read from a config file.

Only the parts rules refer to are read: teams, services, alert sources, channels, incident
templates and maintenance windows (DESIGN.md, "Config file"). Objects without `team:`
belong to the only team when there is exactly one, else to a team named `default`; this
keeps small scenario files short. Malformed entries are reported with the file's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.activations import TemplateSpec
from engine.models import utc
from rules.errors import RulesError
from rules.validate import Known, TeamKeys


class WorldError(RulesError):
    """A config or scenario file's world section is malformed."""


@dataclass(frozen=True)
class Maintenance:
    key: str
    team: str
    services: frozenset[str]
    start: datetime
    end: datetime
    on_end: str = "replay"


@dataclass
class ConfigWorld:
    """A `World` (engine.activations) over a config file's objects."""

    sources: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (team, type)
    services: dict[tuple[str, str], str] = field(default_factory=dict)  # (team, key) -> name
    templates: dict[tuple[str, str], TemplateSpec] = field(default_factory=dict)
    channels: set[tuple[str, str]] = field(default_factory=set)
    windows: list[Maintenance] = field(default_factory=list)
    source_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def team_of(self, source: str) -> str | None:
        found = self.sources.get(source)
        return found[0] if found else None

    def source_type(self, source: str) -> str | None:
        found = self.sources.get(source)
        return found[1] if found else None

    def service_name(self, team: str, key: str) -> str | None:
        return self.services.get((team, key))

    def template(self, team: str, key: str) -> TemplateSpec | None:
        return self.templates.get((team, key))

    def has_channel(self, team: str, key: str) -> bool:
        return (team, key) in self.channels

    def maintenance(self, team: str, service: str, at: datetime) -> str | None:
        for window in self.windows:
            if (
                window.team == team
                and service in window.services
                and window.start <= at < window.end
            ):
                return window.key
        return None

    def window_name(self, team: str, window: str) -> str:
        return window

    def known(self) -> Known:
        """The keys per team, for `rules.validate.check`."""
        teams: dict[str, dict[str, Any]] = {}

        def team(name: str) -> dict[str, Any]:
            return teams.setdefault(
                name, {"services": set(), "templates": set(), "channels": set(), "sources": {}}
            )

        for name, key in self.services:
            team(name)["services"].add(key)
        for name, key in self.templates:
            team(name)["templates"].add(key)
        for name, key in self.channels:
            team(name)["channels"].add(key)
        for key, (name, kind) in self.sources.items():
            team(name)["sources"][key] = kind
        return Known(
            {
                name: TeamKeys(
                    frozenset(v["services"]),
                    frozenset(v["templates"]),
                    frozenset(v["channels"]),
                    dict(v["sources"]),
                )
                for name, v in teams.items()
            }
        )


def world_from_config(data: Mapping[str, Any], where: str) -> ConfigWorld:
    """Build a `ConfigWorld` from a parsed config mapping (`where` names it in errors)."""
    if not isinstance(data, Mapping):
        raise WorldError(f"{where}: the config must be a mapping")
    teams = [t.get("key") for t in _list(data, "teams", where)]
    default = teams[0] if len(teams) == 1 else "default"
    world = ConfigWorld()

    def team_of(item: Mapping[str, Any]) -> str:
        return str(item.get("team") or default)

    for item in _list(data, "services", where):
        key = _key(item, where, "services")
        world.services[(team_of(item), key)] = str(item.get("name") or key)
    for item in _list(data, "alert_sources", where):
        key = _key(item, where, "alert_sources")
        world.sources[key] = (team_of(item), str(item.get("type") or "generic"))
        world.source_settings[key] = dict(item.get("settings") or {})
    for item in _list(data, "channels", where):
        world.channels.add((team_of(item), _key(item, where, "channels")))
    for item in _list(data, "incident_templates", where):
        key = _key(item, where, "incident_templates")
        world.templates[(team_of(item), key)] = TemplateSpec(
            title=str(item.get("title", "")),
            message=str(item.get("message", "")),
            resolve_message=str(item.get("resolve_message", "")),
            status=str(item.get("status", "investigating")),
            services={str(k): str(v) for k, v in dict(item.get("services") or {}).items()},
        )
    for item in _list(data, "maintenance_windows", where):
        key = _key(item, where, "maintenance_windows")
        try:
            world.windows.append(
                Maintenance(
                    key,
                    team_of(item),
                    frozenset(str(s) for s in item.get("services", [])),
                    _time(item["start"]),
                    _time(item["end"]),
                    str(item.get("on_end", "replay")),
                )
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise WorldError(f"{where}: maintenance window {key!r}: {exc}") from None
    return world


def _list(data: Mapping[str, Any], name: str, where: str) -> list[Mapping[str, Any]]:
    items = data.get(name) or []
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise WorldError(f"{where}: `{name}` must be a list of mappings")
    return items


def _key(item: Mapping[str, Any], where: str, kind: str) -> str:
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise WorldError(f"{where}: an entry of `{kind}` has no key")
    return key


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return utc(value)
    return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
