"""Activations in the store, and intents applied to it, in the caller's transaction.

`StoreState` is `engine.activations.State` over the tables `activations`,
`activation_alerts`, `held_alerts` and `alert_events`. An activation's alerts are read one
key at a time, as events ask for them, and its row counts those that fire
(`firing_alerts`), so an event costs the same few statements and rows whether the
activation groups one alert or an alert storm's thousands. `StoreWorld` answers the machine's
questions about services, templates and maintenance from the store; `apply_intents` turns
intents into claims, incidents, rule errors and outbox rows, and recomputes the affected
services' status with its cause. Everything happens on the connection it is given, so an
evaluation batch, its effects and its events' `evaluated_at` commit together.

On PostgreSQL, rows an evaluator reads to change are locked (`FOR UPDATE`), and creating an
activation takes a transaction-scoped advisory lock on its (team, rule, group), so two
evaluators of different partitions (two sources feeding one `group_by`) never create two
activations for one group. SQLite serialises writers already.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import deadlines, outbox, status
from . import incidents as incidents_api
from .activations import (
    Activation,
    ActivationState,
    AlertKey,
    Alerts,
    AlertState,
    Intent,
    IntentKind,
    TemplateSpec,
)
from .models import AlertEvent, EventStatus, ServiceStatus, Severity
from .rule_messages import rule_message
from .tables import (
    activation_alerts,
    activations,
    alert_events,
    alert_sources,
    channels,
    claims,
    held_alerts,
    incident_alerts,
    incident_templates,
    incidents,
    maintenance_services,
    maintenance_windows,
    rule_errors,
    services,
    teams,
    utcnow,
)

log = logging.getLogger("beacon.rules")

#: The deadline that wakes the evaluator when an activation needs the clock; its outbox row
#: is `deadline.rules.tick` (engine.deadlines).
TICK = "rules.tick"
#: workers.notify's outbox kind for a message to a team channel.
NOTIFY_CHANNEL = "notify.channel"


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


#: An `activation_alerts` row's values that `save` writes, in `_ALERT_COLUMNS` order.
_AlertRow = tuple[bool, datetime, datetime, datetime | None, int | None]
_ALERT_COLUMNS = ("firing", "first_fired_at", "last_occurred_at", "resolved_at", "last_event_id")


def _alert_row(alert: AlertState) -> _AlertRow:
    event_id = int(alert.last_event_id) if alert.last_event_id.isdigit() else None
    return (alert.firing, alert.first_fired_at, alert.last_occurred_at, alert.resolved_at, event_id)


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


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
_OPEN_FOR = (
    sa.select(activations)
    .where(activations.c.team_id == sa.bindparam("team_id"))
    .where(
        activations.c.rule_id == sa.bindparam("rule_id"),
        activations.c.group_key == sa.bindparam("group_key"),
    )
    .where(activations.c.state != ActivationState.ENDED)
    .order_by(activations.c.id)
)
_OPEN_FOR_PG = _OPEN_FOR.with_for_update()


def _bound(*columns: str) -> dict[str, Any]:
    """SET values taken from bind parameters of the columns' own names."""
    return {name: sa.bindparam(name) for name in columns}


_SAVE_ACTIVATION = (
    activations.update()
    .where(activations.c.id == sa.bindparam("act_id"))
    .values(
        _bound(
            "team_id",
            "rule_id",
            "group_key",
            "state",
            "spec",
            "started_at",
            "acted_at",
            "last_firing_at",
            "ended_at",
            "end_reason",
            "error",
            "due_at",
            "firing_alerts",
        )
    )
)
_LOAD_ALERT = (
    sa.select(*(activation_alerts.c[name] for name in _ALERT_COLUMNS))
    .where(activation_alerts.c.activation_id == sa.bindparam("act_id"))
    .where(activation_alerts.c.source_id == sa.bindparam("alert_source_id"))
    .where(activation_alerts.c.dedup_key == sa.bindparam("alert_dedup_key"))
)
_SAVE_ALERT = (
    activation_alerts.update()
    .where(activation_alerts.c.activation_id == sa.bindparam("act_id"))
    .where(activation_alerts.c.source_id == sa.bindparam("alert_source_id"))
    .where(activation_alerts.c.dedup_key == sa.bindparam("alert_dedup_key"))
    .values(_bound(*_ALERT_COLUMNS))
)
_LAST_STATUS = (
    sa.select(alert_events.c.status, alert_events.c.occurred_at)
    .where(
        alert_events.c.source_id == sa.bindparam("source_id"),
        alert_events.c.dedup_key == sa.bindparam("dedup_key"),
    )
    .where(alert_events.c.test.is_(False))
    # Only what was evaluated before: later events of the batch are not known yet.
    .where(alert_events.c.evaluated_at.isnot(None))
    .order_by(alert_events.c.occurred_at.desc(), alert_events.c.id.desc())
    .limit(1)
)

# Built once: resolves look activations up by alert for every event, and building the
# statement cost more than running it.
_OPEN_BY_ALERT = (
    sa.select(activation_alerts.c.activation_id)
    .join(activations, activations.c.id == activation_alerts.c.activation_id)
    .where(activation_alerts.c.source_id == sa.bindparam("source_id"))
    .where(activation_alerts.c.dedup_key == sa.bindparam("dedup_key"))
    .where(activations.c.state != ActivationState.ENDED)
    .order_by(activation_alerts.c.activation_id)
)


class StoreState:
    """`engine.activations.State` on the store, with an identity map per transaction."""

    def __init__(self, ids: Ids) -> None:
        self.ids = ids
        self.conn = ids.conn
        self._loaded: dict[int, Activation] = {}
        self._postgres = self.conn.dialect.name == "postgresql"
        # A lower bound on the earliest stored due time (None: nothing due at all), so that
        # `due`, which the machine asks before every event, queries only when something can
        # be due. Unknown until first needed; every `save` lowers it.
        self._earliest: datetime | None = None
        self._earliest_known = False
        # What the store holds for each activation in the identity map, as of this
        # transaction's last read or write: the values of the alert rows read so far (an
        # activation's alerts are read one key at a time, as events ask for them), and its
        # `rules.tick` deadline as written here. `save` writes only what differs, so an
        # event costs the same few statements and rows whether its activation groups one
        # alert or a storm of them. Nothing else writes these rows while the activation is
        # loaded: PostgreSQL holds its row `FOR UPDATE`, SQLite holds the one write lock.
        self._alert_rows: dict[int, dict[AlertKey, _AlertRow]] = {}
        self._deadlines: dict[int, datetime | None] = {}
        # The latest status (by the tool's clock) of each alert this transaction evaluated:
        # its outcomes, and so its `evaluated_at`, are written when the batch ends, and
        # `last_status` must see a resolve evaluated just before a late firing.
        self._noted: dict[tuple[str, str, str], tuple[EventStatus, datetime]] = {}

    def _select(self) -> Any:
        query = sa.select(activations)
        return query.with_for_update() if self._postgres else query

    def _load(self, row: Any) -> Activation:
        if row.id in self._loaded:
            return self._loaded[row.id]
        spec = dict(row.spec or {})
        act_id, team = int(row.id), self.ids.team_key(row.team_id)
        act = Activation(
            team=team,
            rule_id=row.rule_id,
            group_key=row.group_key,
            state=ActivationState(row.state),
            started_at=row.started_at,
            services=list(spec.get("services", [])),
            id=row.id,
            acted_at=row.acted_at,
            last_firing_at=row.last_firing_at,
            resolving_since=_dt(spec.get("resolving_since")),
            ended_at=row.ended_at,
            end_reason=row.end_reason,
            due_at=row.due_at,
            incident_opened=bool(spec.get("incident_opened")),
            alerts=Alerts(lambda key: self._load_alert(act_id, team, key), row.firing_alerts),
            error=row.error,
            last_event=spec.get("event"),
        )
        for source, dedup, at in spec.get("fires", []):
            act.fires[(source, dedup)] = datetime.fromisoformat(at)
        self._loaded[row.id] = act
        self._alert_rows[row.id] = {}
        return act

    def _load_alert(self, act_id: int, team: str, key: AlertKey) -> AlertState | None:
        """One alert of a loaded activation, as stored; None if it has not joined it."""
        try:
            source_id = self.ids.source(team, key[0])
        except LookupError:
            return None  # no such source: no row can name it
        where = {"act_id": act_id, "alert_source_id": source_id, "alert_dedup_key": key[1]}
        row = self.conn.execute(_LOAD_ALERT, where).first()
        if row is None:
            return None
        values: _AlertRow = tuple(row)
        self._alert_rows[act_id][key] = values
        firing, first_fired_at, last_occurred_at, resolved_at, event_id = values
        return AlertState(
            firing, first_fired_at, last_occurred_at, resolved_at, str(event_id or "")
        )

    def open_for(self, team: str, rule_id: str, group_key: str) -> Activation | None:
        for act in self._loaded.values():
            if (act.team, act.rule_id, act.group_key) == (team, rule_id, group_key) and (
                act.state != ActivationState.ENDED
            ):
                return act
        if self._postgres:
            lock = zlib.crc32(f"{team}\0{rule_id}\0{group_key}".encode()) - 2**31
            self.conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
        row = self.conn.execute(
            _OPEN_FOR_PG if self._postgres else _OPEN_FOR,
            {"team_id": self.ids.team(team), "rule_id": rule_id, "group_key": group_key},
        ).first()
        return None if row is None else self._load(row)

    def by_alert(self, team: str, source: str, dedup_key: str) -> list[Activation]:
        try:
            source_id = self.ids.source(team, source)
        except LookupError:
            return []
        ids = self.conn.execute(
            _OPEN_BY_ALERT, {"source_id": source_id, "dedup_key": dedup_key}
        ).scalars()
        return [self._by_id(i) for i in ids]

    def _by_id(self, activation_id: int) -> Activation:
        if activation_id in self._loaded:
            return self._loaded[activation_id]
        row = self.conn.execute(self._select().where(activations.c.id == activation_id)).one()
        return self._load(row)

    def _maybe_due(self, now: datetime) -> bool:
        if not self._earliest_known:
            value = self.conn.execute(
                sa.select(sa.func.min(activations.c.due_at)).where(
                    activations.c.state != ActivationState.ENDED
                )
            ).scalar()
            if isinstance(value, str):  # SQLite's min() loses the column type
                value = datetime.fromisoformat(value)
            if value is not None and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            self._earliest, self._earliest_known = value, True
        if self._earliest is not None and self._earliest <= now:
            return True
        # Activations changed in this transaction but not saved yet.
        return any(
            a.due_at is not None and a.due_at <= now and a.state != ActivationState.ENDED
            for a in self._loaded.values()
        )

    def due(self, now: datetime) -> list[Activation]:
        if not self._maybe_due(now):
            return []
        self._earliest_known = False  # something is due: its handling moves the bound
        rows = self.conn.execute(
            self._select()
            .where(activations.c.due_at <= now)
            .where(activations.c.state != ActivationState.ENDED)
            .order_by(activations.c.due_at, activations.c.id)
            .limit(100)
        ).all()
        found = [self._load(r) for r in rows]
        return [
            a
            for a in found
            if a.state != ActivationState.ENDED and a.due_at is not None and a.due_at <= now
        ]

    def save(self, act: Activation) -> None:
        values = {
            "team_id": self.ids.team(act.team),
            "rule_id": act.rule_id,
            "group_key": act.group_key,
            "state": str(act.state),
            "spec": act.spec(),
            "started_at": act.started_at,
            "acted_at": act.acted_at,
            "last_firing_at": act.last_firing_at,
            "ended_at": act.ended_at,
            "end_reason": act.end_reason,
            "error": act.error,
            "due_at": act.due_at,
            "firing_alerts": act.alerts.firing(),
        }
        if act.id is None:
            act.id = _inserted(self.conn.execute(activations.insert(), values))
            self._loaded[act.id] = act
            self._alert_rows[act.id] = {}
        else:
            # Always written: `apply_intents` sets `error` on the row behind the machine's
            # back (a rule error), and the machine's next save has always overwritten it.
            self.conn.execute(_SAVE_ACTIVATION, {"act_id": act.id, **values})
        self._save_deadline(act.id, act.due_at)
        self._save_alerts(act.id, act)

    def _save_deadline(self, act_id: int, due_at: datetime | None) -> None:
        if due_at is not None:
            if self._earliest_known and (self._earliest is None or due_at < self._earliest):
                self._earliest = due_at
        if act_id in self._deadlines and self._deadlines[act_id] == due_at:
            return  # this transaction wrote it already
        if due_at is not None:
            deadlines.schedule(self.conn, TICK, f"activation:{act_id}", due_at)
        else:
            deadlines.cancel(self.conn, TICK, f"activation:{act_id}")
        self._deadlines[act_id] = due_at

    def _save_alerts(self, act_id: int, act: Activation) -> None:
        """Write the alert rows the machine touched that are new or differ from the stored
        ones (the activation's `firing_alerts`, saved with it, counts them all)."""
        stored = self._alert_rows[act_id]
        for key, alert in act.alerts.take_touched():
            values = _alert_row(alert)
            known = stored.get(key)
            if known == values:
                continue
            row = dict(zip(_ALERT_COLUMNS, values, strict=True))
            source_id = self.ids.source(act.team, key[0])
            if known is None:
                # `Alerts` looked the key up before it was set: a new key has no row.
                self.conn.execute(
                    activation_alerts.insert(),
                    {"activation_id": act_id, "source_id": source_id, "dedup_key": key[1], **row},
                )
            else:
                where = {"act_id": act_id, "alert_source_id": source_id, "alert_dedup_key": key[1]}
                if not self.conn.execute(_SAVE_ALERT, {**where, **row}).rowcount:
                    # Gone since it was loaded (its source deleted meanwhile): the count on
                    # the activation would no longer match its rows. Fail the transaction;
                    # it is evaluated again from what the store holds now.
                    raise RuntimeError(f"alert {key} of activation {act_id} is gone")
            stored[key] = values

    def hold(self, window: str, event: AlertEvent, rule_id: str) -> None:
        self.conn.execute(
            held_alerts.insert().values(
                window_id=int(window), event_id=int(event.id), rule_id=rule_id
            )
        )

    def take_held(self, window: str, only: int | None = None) -> list[tuple[AlertEvent, str]]:
        """The window's held alerts not yet released (or only held alert `only`), released."""
        query = (
            sa.select(held_alerts.c.id, held_alerts.c.rule_id, alert_events)
            .join(alert_events, alert_events.c.id == held_alerts.c.event_id)
            .where(held_alerts.c.window_id == int(window), held_alerts.c.released_at.is_(None))
            .order_by(held_alerts.c.id)
        )
        if only is not None:
            query = query.where(held_alerts.c.id == only)
        rows = self.conn.execute(query).all()
        if rows:
            self.conn.execute(
                held_alerts.update()
                .where(held_alerts.c.id.in_([r.id for r in rows]))
                .values(released_at=sa.func.now())
            )
        return [(event_from_row(r, self.ids), r.rule_id) for r in rows]

    def held_in(self, team: str, source: str, dedup_key: str) -> str | None:
        """The window holding this alert, not yet released, if any."""
        try:
            source_id = self.ids.source(team, source)
        except LookupError:
            return None
        window = self.conn.execute(
            sa.select(held_alerts.c.window_id)
            .join(alert_events, alert_events.c.id == held_alerts.c.event_id)
            .where(
                alert_events.c.source_id == source_id,
                alert_events.c.dedup_key == dedup_key,
                held_alerts.c.released_at.is_(None),
            )
            .limit(1)
        ).scalar()
        return None if window is None else str(window)

    def last_status(
        self, team: str, source: str, dedup_key: str
    ) -> tuple[EventStatus, datetime] | None:
        try:
            source_id = self.ids.source(team, source)
        except LookupError:
            return None
        row = self.conn.execute(
            _LAST_STATUS, {"source_id": source_id, "dedup_key": dedup_key}
        ).first()
        stored = None if row is None else (EventStatus(row.status), row.occurred_at)
        noted = self._noted.get((team, source, dedup_key))
        if noted is None or (stored is not None and stored[1] > noted[1]):
            return stored
        return noted

    def note_status(self, team: str, event: AlertEvent) -> None:
        """Remember `event`'s status for the rest of this transaction (see `_noted`)."""
        key = (team, event.source, event.dedup_key)
        known = self._noted.get(key)
        if known is None or event.occurred_at >= known[1]:
            self._noted[key] = (event.status, event.occurred_at)


def forget_source_alerts(conn: Connection, source_id: int, now: datetime | None = None) -> None:
    """Call before deleting alert source `source_id`: its `activation_alerts` rows go with
    it (the foreign key cascades), so its firing alerts stop counting in their
    activations' `firing_alerts`, and the other alerts' resolves still end them. An
    activation left with no firing alert is due `now`: no resolve can reach it any more, so
    the clock ends it (or starts its `resolve.after`) as if its last alert resolved then,
    rather than leaving its services red until `resolve.timeout`, or for ever.

    On PostgreSQL the source row is locked first, so that no evaluator adds an alert of it
    meanwhile, then the activations, so that none changes one of its alerts meanwhile; the
    count is then taken by a statement that sees what they committed."""
    has_firing = sa.select(activation_alerts.c.activation_id).where(
        activation_alerts.c.source_id == source_id, activation_alerts.c.firing
    )
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.select(alert_sources.c.id).where(alert_sources.c.id == source_id).with_for_update()
        )
        # Every activation holding any alert of the source, firing or not as this snapshot
        # sees it: an evaluator may be re-firing a resolved one right now, under the
        # activation's lock, and its count must be read after it committed.
        has_any = sa.select(activation_alerts.c.activation_id).where(
            activation_alerts.c.source_id == source_id
        )
        conn.execute(
            sa.select(activations.c.id)
            .where(activations.c.id.in_(has_any))
            .order_by(activations.c.id)
            .with_for_update()
        )
    firing = (
        sa.select(sa.func.count())
        .where(activation_alerts.c.activation_id == activations.c.id)
        .where(activation_alerts.c.source_id == source_id, activation_alerts.c.firing)
        .scalar_subquery()
    )
    conn.execute(
        activations.update()
        .where(activations.c.id.in_(has_firing))
        .values(firing_alerts=activations.c.firing_alerts - firing)
    )
    now = now or utcnow()
    orphaned = (
        conn.execute(
            sa.select(activations.c.id)
            .where(activations.c.id.in_(has_firing))
            .where(activations.c.firing_alerts <= 0)
            .where(activations.c.state.in_((ActivationState.PENDING, ActivationState.ACTIVE)))
            .order_by(activations.c.id)
        )
        .scalars()
        .all()
    )
    for act_id in orphaned:
        _make_due(conn, act_id, now)


def _make_due(conn: Connection, act_id: int, now: datetime) -> None:
    """Have the rules clock look at activation `act_id` at `now` (or earlier if it was
    due earlier)."""
    conn.execute(
        activations.update()
        .where(activations.c.id == act_id)
        .where(sa.or_(activations.c.due_at.is_(None), activations.c.due_at > now))
        .values(due_at=now)
    )
    deadlines.schedule(conn, TICK, f"activation:{act_id}", now)


_COUNTED = (
    sa.select(sa.func.count())
    .where(activation_alerts.c.activation_id == activations.c.id, activation_alerts.c.firing)
    .scalar_subquery()
)


@dataclass(frozen=True)
class Recount:
    """An activation whose stored count of firing alerts was wrong, and the right one."""

    activation_id: int
    stored: int
    counted: int


def recount_firing_alerts(conn: Connection, now: datetime | None = None) -> list[Recount]:
    """Set every open activation's `firing_alerts` to the number of its firing alert rows
    where the two differ, and make one left with none due at `now` (see
    `forget_source_alerts`); returns what it corrected.

    The count is kept by `StoreState.save` and `forget_source_alerts`; a count that is
    wrong keeps an activation open for ever (too high) or ends it early (too low). Nothing
    is known to make it wrong: the daily purge runs this as a guard; each correction is
    logged as a warning.
    On PostgreSQL the activations are locked first, in id order, and counted again after.
    """
    now = now or utcnow()
    drifted = sa.select(activations.c.id).where(
        activations.c.state != ActivationState.ENDED, activations.c.firing_alerts != _COUNTED
    )
    ids = conn.execute(drifted.order_by(activations.c.id)).scalars().all()
    if not ids:
        return []
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.select(activations.c.id)
            .where(activations.c.id.in_(ids))
            .order_by(activations.c.id)
            .with_for_update()
        )
    rows = conn.execute(
        sa.select(
            activations.c.id, activations.c.state, activations.c.firing_alerts, _COUNTED
        ).where(
            activations.c.id.in_(ids),
            activations.c.state != ActivationState.ENDED,
            activations.c.firing_alerts != _COUNTED,
        )
    ).all()
    fixed = []
    for act_id, state, stored, counted in rows:
        conn.execute(
            activations.update().where(activations.c.id == act_id).values(firing_alerts=counted)
        )
        if counted == 0 and state in (ActivationState.PENDING, ActivationState.ACTIVE):
            _make_due(conn, act_id, now)
        fixed.append(Recount(int(act_id), int(stored), int(counted)))
        log.warning(
            "activation %d counted %d firing alerts but has %d: corrected", act_id, stored, counted
        )
    return fixed


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
        status=EventStatus(row.status),
        severity=Severity(row.severity),
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


# --- applying intents -----------------------------------------------------------------------


def _inserted(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return int(key[0])


def _event_id(data: Any) -> int | None:
    value = str(data.get("event_id") or "")
    return int(value) if value.isdigit() else None


def apply_intents(conn: Connection, ids: Ids, intents: Iterable[Intent]) -> None:
    """Apply `intents` in order on `conn` (see the module docstring)."""
    for intent in intents:
        handler = _HANDLERS.get(intent.kind)
        if handler is not None:
            handler(conn, ids, intent)


def _cause(intent: Intent) -> dict[str, Any]:
    return {
        "rule": intent.rule_id,
        "activation": intent.activation_id,
        "group": intent.group_key,
        **{k: v for k, v in intent.data.items() if k in ("alert", "source", "event_id", "reason")},
    }


def _claim(conn: Connection, ids: Ids, intent: Intent) -> None:
    found = ids.service(intent.team, str(intent.data["service"]))
    if found is None:
        return
    conn.execute(
        claims.insert(),
        {
            "service_id": found[0],
            "activation_id": intent.activation_id,
            "status": str(intent.data["status"]),
            "rule_id": intent.rule_id,
            "created_at": intent.at,
        },
    )
    status.recompute(conn, [found[0]], cause_kind="rule", cause=_cause(intent), now=intent.at)


_RELEASE = (
    claims.update()
    .where(claims.c.activation_id == sa.bindparam("act_id"))
    .where(claims.c.service_id == sa.bindparam("claim_service_id"))
    .where(claims.c.released_at.is_(None))
    .values(released_at=sa.bindparam("at"), released_by=sa.bindparam("by"))
)


def _release(conn: Connection, ids: Ids, intent: Intent) -> None:
    found = ids.service(intent.team, str(intent.data["service"]))
    if found is None:
        return
    conn.execute(
        _RELEASE,
        {
            "act_id": intent.activation_id,
            "claim_service_id": found[0],
            "at": intent.at,
            "by": f"rule:{intent.rule_id}",
        },
    )
    status.recompute(conn, [found[0]], cause_kind="rule", cause=_cause(intent), now=intent.at)


def _open_incident(conn: Connection, ids: Ids, intent: Intent) -> None:
    data = intent.data
    impacts: dict[int, ServiceStatus] = {}
    for key, impact in dict(data.get("services") or {}).items():
        found = ids.service(intent.team, key)
        if found is not None:
            impacts[found[0]] = ServiceStatus(impact)
    team_id = ids.team(intent.team)
    template_id = conn.execute(
        sa.select(incident_templates.c.id).where(
            incident_templates.c.team_id == team_id,
            incident_templates.c.key == data.get("template"),
        )
    ).scalar()
    incident_id = incidents_api.create(
        conn,
        team_id=team_id,
        title=str(data["title"]),
        message=str(data.get("message") or ""),
        status=str(data.get("status") or "investigating"),
        impacts=impacts,
        started_at=intent.at,
        template_id=template_id,
        activation_id=intent.activation_id,
        managed_by="automation",
        author=f"rule:{intent.rule_id}",
        notify=bool(data.get("notify", True)),
        now=intent.at,
    )
    event_id = _event_id(data)
    if event_id is not None:
        conn.execute(incident_alerts.insert().values(incident_id=incident_id, event_id=event_id))
    conn.execute(
        activations.update()
        .where(activations.c.id == intent.activation_id)
        .values(incident_id=incident_id)
    )


def _incident_of(conn: Connection, intent: Intent) -> Any:
    return conn.execute(
        sa.select(incidents.c.id, incidents.c.status, incidents.c.managed_by)
        .join(activations, activations.c.incident_id == incidents.c.id)
        .where(activations.c.id == intent.activation_id)
    ).first()


def _attach_alert(conn: Connection, ids: Ids, intent: Intent) -> None:
    incident = _incident_of(conn, intent)
    event_id = _event_id(intent.data)
    if incident is None or event_id is None:
        return
    exists = conn.execute(
        sa.select(incident_alerts.c.event_id).where(
            incident_alerts.c.incident_id == incident.id, incident_alerts.c.event_id == event_id
        )
    ).first()
    if exists is None:
        conn.execute(incident_alerts.insert().values(incident_id=incident.id, event_id=event_id))


def _resolve_incident(conn: Connection, ids: Ids, intent: Intent) -> None:
    incident = _incident_of(conn, intent)
    # A person who took the incident over owns its timeline: automation leaves it alone.
    if incident is None or incident.managed_by != "automation" or incident.status == "resolved":
        return
    incidents_api.resolve(
        conn,
        incident.id,
        message=str(intent.data.get("message") or ""),
        author=f"rule:{intent.rule_id}",
        now=intent.at,
    )


def _notify(conn: Connection, ids: Ids, intent: Intent) -> None:
    data = intent.data
    channel = conn.execute(
        sa.select(channels.c.id).where(
            channels.c.team_id == ids.team(intent.team), channels.c.key == data.get("channel")
        )
    ).scalar()
    if channel is None:
        _rule_error(
            conn,
            ids,
            Intent(
                IntentKind.RULE_ERROR,
                intent.at,
                intent.rule_id,
                intent.team,
                intent.group_key,
                intent.activation_id,
                {"message": f"unknown channel {data.get('channel')!r} in team {intent.team!r}"},
            ),
        )
        return
    state = str(data.get("state") or "firing")
    summary = ""
    event_id = _event_id(data)
    if event_id is not None:
        summary = str(
            conn.execute(
                sa.select(alert_events.c.summary).where(alert_events.c.id == event_id)
            ).scalar()
            or ""
        )
    said = rule_message(
        conn, ids.team(intent.team), intent.rule_id, state, intent.activation_id, summary
    )
    outbox.emit(
        conn,
        NOTIFY_CHANNEL,
        {
            "channel_id": channel,
            # One message per activation, state and channel, however often this is retried.
            "dedup_key": f"rule:{intent.activation_id}:{state}:{channel}",
            "subject": said.subject,
            "text": said.text,
            # The sender puts its base URL in front (engine.rule_messages).
            "link_path": said.path,
            "payload": {
                "rule": intent.rule_id,
                "state": state,
                "group": intent.group_key,
                "activation": intent.activation_id,
                "event_id": event_id,
                "summary": summary,
                "services": said.services,
            },
        },
    )


def _rule_error(conn: Connection, ids: Ids, intent: Intent) -> None:
    message = str(intent.data.get("message", ""))
    event_id = _event_id(intent.data)
    # Recorded against the services it concerns: an error on the clock (a `for` rule's
    # incident failing to render) comes with no event by which `why` could find it.
    service_ids: list[int | None] = [
        found[0]
        for key in intent.data.get("services") or []
        if (found := ids.service(intent.team, str(key))) is not None
    ]
    conn.execute(
        rule_errors.insert(),
        [
            {
                "rule_id": intent.rule_id,
                "event_id": event_id,
                "service_id": service_id,
                "message": message,
                "at": intent.at,
            }
            for service_id in service_ids or [None]
        ],
    )
    log.warning("rule %r (team %r): %s", intent.rule_id, intent.team, message)
    if intent.activation_id is not None:
        conn.execute(
            activations.update()
            .where(activations.c.id == intent.activation_id)
            .values(error=str(intent.data.get("message", ""))[:2000])
        )


_HANDLERS = {
    IntentKind.CLAIM: _claim,
    IntentKind.RELEASE: _release,
    IntentKind.OPEN_INCIDENT: _open_incident,
    IntentKind.ATTACH_ALERT: _attach_alert,
    IntentKind.RESOLVE_INCIDENT: _resolve_incident,
    IntentKind.NOTIFY: _notify,
    IntentKind.RULE_ERROR: _rule_error,
}


def release_claim(conn: Connection, claim_id: int, *, by: str, now: datetime | None = None) -> bool:
    """An operator releases one claim: the service's status stops counting it at once,
    while its activation runs on (and will not claim again for the same alerts). False if
    the claim does not exist or was already released."""
    row = conn.execute(
        sa.select(claims.c.service_id, claims.c.rule_id, claims.c.activation_id).where(
            claims.c.id == claim_id, claims.c.released_at.is_(None)
        )
    ).first()
    if row is None:
        return False
    at = now or utcnow()
    conn.execute(
        claims.update().where(claims.c.id == claim_id).values(released_at=at, released_by=by)
    )
    status.recompute(
        conn,
        [row.service_id],
        cause_kind="user",
        cause={"released_claim": claim_id, "rule": row.rule_id, "by": by},
        now=at,
    )
    return True
