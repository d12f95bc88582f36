"""The world a replay (`beacon rules test`) runs against: services, alert sources,
channels, incident templates and maintenance windows, by team.

From a config file (`--config`) it is built from the strict models, after the same checks
as `beacon apply` (`world_from_model`). A scenario's own `world:` section is a shorthand
(`world_from_config`): objects without `team:` belong to the only team when there is
exactly one, else to a team named `default`, and names and types may be left out; this
keeps small scenario files short. Its keys are built the one way (`rules.validate.known_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.activations import TemplateSpec
from engine.models import utc
from rules.errors import RulesError
from rules.validate import Known, known_keys

from .models import ConfigFile


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
        """The keys per team, for `rules.validate.check` (built as `apply` builds them)."""
        keys: dict[tuple[str, str], set[str]] = {}
        for team, key in self.services:
            keys.setdefault(("services", team), set()).add(key)
        for team, key in self.templates:
            keys.setdefault(("incident_templates", team), set()).add(key)
        for team, key in self.channels:
            keys.setdefault(("channels", team), set()).add(key)
        for key, (team, _kind) in self.sources.items():
            keys.setdefault(("alert_sources", team), set()).add(key)
        types = {(team, key): kind for key, (team, kind) in self.sources.items()}
        return known_keys(
            {team for _kind, team in keys},
            lambda kind, team: keys.get((kind, team), set()),
            types,
        )


def world_from_model(config: ConfigFile) -> ConfigWorld:
    """The world of a config file read by the strict models (`config.check`), as `beacon
    rules test --config` replays against it."""
    world = ConfigWorld()
    for svc in config.services or []:
        world.services[(svc.team, svc.key)] = svc.name
    for src in config.alert_sources or []:
        world.sources[src.key] = (src.team, src.type)
        world.source_settings[src.key] = dict(src.settings)
    for chan in config.channels or []:
        world.channels.add((chan.team, chan.key))
    for tpl in config.incident_templates or []:
        world.templates[(tpl.team, tpl.key)] = TemplateSpec(
            title=tpl.title,
            message=tpl.message,
            resolve_message=tpl.resolve_message,
            status=str(tpl.status),
            services={k: str(v) for k, v in tpl.services.items()},
        )
    for win in config.maintenance_windows or []:
        world.windows.append(
            Maintenance(
                win.key,
                win.team,
                frozenset(win.services),
                utc(win.start),
                utc(win.end),
                str(win.on_end),
            )
        )
    return world


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
