"""Key <-> id lookups of one transaction, and the machine's `World` answered from the store.

`Ids` caches the teams, sources and services an evaluation batch names; `StoreWorld` is
`engine.activations.policy.World` over the store; `event_from_row` rebuilds a stored event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..models import AlertEvent, EventStatus, Severity
from ..tables import (
    alert_sources,
    channels,
    incident_templates,
    maintenance_services,
    maintenance_windows,
    services,
    teams,
)
from .policy import TemplateSpec


@dataclass
class Ids:
    """Key <-> id lookups for one transaction (teams, sources, services)."""

    conn: Connection
    _teams: dict[str, int] = field(default_factory=dict)
    _team_keys: dict[int, str] = field(default_factory=dict)
    _sources: dict[tuple[int, str], tuple[int, str]] = field(default_factory=dict)
    _source_keys: dict[int, tuple[str, str]] = field(default_factory=dict)
    _services: dict[tuple[int, str], tuple[int, str] | None] = field(default_factory=dict)

    def team(self, key: str) -> int:
        if key not in self._teams:
            found = self.conn.execute(sa.select(teams.c.id).where(teams.c.key == key)).scalar()
            if found is None:
                raise LookupError(f"no team {key!r}")
            self._teams[key] = int(found)
            self._team_keys[int(found)] = key
        return self._teams[key]

    def team_key(self, team_id: int) -> str:
        if team_id not in self._team_keys:
            key = self.conn.execute(sa.select(teams.c.key).where(teams.c.id == team_id)).scalar()
            self._team_keys[team_id] = str(key)
            self._teams[str(key)] = team_id
        return self._team_keys[team_id]

    def source(self, team: str, key: str) -> int:
        return self._source(team, key)[0]

    def _source(self, team: str, key: str) -> tuple[int, str]:
        team_id = self.team(team)
        if (team_id, key) not in self._sources:
            row = self.conn.execute(
                sa.select(alert_sources.c.id, alert_sources.c.type).where(
                    alert_sources.c.team_id == team_id, alert_sources.c.key == key
                )
            ).first()
            if row is None:
                raise LookupError(f"no alert source {key!r} in team {team!r}")
            self._sources[(team_id, key)] = (row.id, row.type)
            self._source_keys[row.id] = (key, row.type)
        return self._sources[(team_id, key)]

    def source_key(self, source_id: int) -> tuple[str, str]:
        """(key, type) of an alert source."""
        if source_id not in self._source_keys:
            row = self.conn.execute(
                sa.select(alert_sources.c.key, alert_sources.c.type).where(
                    alert_sources.c.id == source_id
                )
            ).one()
            self._source_keys[source_id] = (row.key, row.type)
        return self._source_keys[source_id]

    def service(self, team: str, key: str) -> tuple[int, str] | None:
        """(id, name) of a team's service, None if there is none."""
        team_id = self.team(team)
        if (team_id, key) not in self._services:
            row = self.conn.execute(_SERVICE, {"team_id": team_id, "key": key}).first()
            self._services[(team_id, key)] = (row.id, row.name) if row else None
        return self._services[(team_id, key)]


class StoreWorld:
    """`engine.activations.World` answered from the store."""

    def __init__(self, ids: Ids) -> None:
        self.ids = ids
        self.conn = ids.conn

    def team_of(self, source: str) -> str | None:
        # Source keys are unique per team only: the evaluator passes the team explicitly.
        return None

    def service_name(self, team: str, key: str) -> str | None:
        found = self.ids.service(team, key)
        return found[1] if found else None

    def template(self, team: str, key: str) -> TemplateSpec | None:
        row = self.conn.execute(
            sa.select(incident_templates).where(
                incident_templates.c.team_id == self.ids.team(team),
                incident_templates.c.key == key,
            )
        ).first()
        if row is None:
            return None
        return TemplateSpec(
            row.title,
            row.message,
            row.resolve_message,
            row.status,
            {str(k): str(v) for k, v in dict(row.services or {}).items()},
        )

    def has_channel(self, team: str, key: str) -> bool:
        found = self.conn.execute(
            sa.select(channels.c.id).where(
                channels.c.team_id == self.ids.team(team), channels.c.key == key
            )
        ).first()
        return found is not None

    def maintenance(self, team: str, service: str, at: datetime) -> str | None:
        found = self.ids.service(team, service)
        if found is None:
            return None
        window = self.conn.execute(_MAINTENANCE, {"service_id": found[0], "at": at}).scalar()
        return None if window is None else str(window)

    def window_name(self, team: str, window: str) -> str:
        row = self.conn.execute(
            sa.select(maintenance_windows.c.key, maintenance_windows.c.title).where(
                maintenance_windows.c.id == int(window)
            )
        ).first()
        if row is None:
            return window
        return str(row.key) if row.key else repr(row.title)


# Built once: the machine runs these for nearly every event, and building a statement
# cost more than running it.
_SERVICE = sa.select(services.c.id, services.c.name).where(
    services.c.team_id == sa.bindparam("team_id"), services.c.key == sa.bindparam("key")
)
_MAINTENANCE = (
    sa.select(maintenance_windows.c.id)
    .join(maintenance_services, maintenance_services.c.window_id == maintenance_windows.c.id)
    .where(maintenance_services.c.service_id == sa.bindparam("service_id"))
    .where(
        maintenance_windows.c.starts_at <= sa.bindparam("at"),
        maintenance_windows.c.ends_at > sa.bindparam("at"),
    )
    .where(maintenance_windows.c.status != "completed")
    .order_by(maintenance_windows.c.id)
)


# By value: calling an enum class costs more than the rest of a field here (an unknown
# value still goes to the call, which names it).
_STATUSES = {member.value: member for member in EventStatus}
_SEVERITIES = {member.value: member for member in Severity}


def event_from_row(row: Any, ids: Ids) -> AlertEvent:
    """An `alert_events` row as the normalised event (its id as text).

    Not validated again: the row was a validated event when it was stored, and every
    evaluation rebuilds its events (validation was a third of the time spent here)."""
    return row_event(row, *ids.source_key(row.source_id))


def row_event(row: Any, source_key: str, source_type: str) -> AlertEvent:
    """`event_from_row` for a row whose source is known."""
    return AlertEvent.model_construct(
        id=str(row.id),
        source=source_key,
        source_type=source_type,
        dedup_key=row.dedup_key,
        status=_STATUSES.get(row.status) or EventStatus(row.status),
        severity=_SEVERITIES.get(row.severity) or Severity(row.severity),
        summary=row.summary,
        details=row.details,
        labels=dict(row.labels or {}),
        links=list(row.links or []),
        occurred_at=row.occurred_at,
        received_at=row.received_at,
        raw=None,
        test=bool(row.test),
        delivery_id=None,
    )
