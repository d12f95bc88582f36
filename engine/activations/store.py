"""`StoreState`: the machine's `State` over the tables `activations`, `activation_alerts`,
`held_alerts` and `alert_events`, in the caller's transaction.

An activation's alerts are read one key at a time, as events ask for them, and its row
counts those that fire (`firing_alerts`), so an event costs the same few statements and
rows whether the activation groups one alert or an alert storm's thousands. Everything
happens on the connection it is given, so an evaluation batch, its effects and its events'
`evaluated_at` commit together.

On PostgreSQL, rows an evaluator reads to change are locked (`FOR UPDATE`), and creating an
activation takes a transaction-scoped advisory lock on its (team, rule, group), so two
evaluators of different partitions (two sources feeding one `group_by`) never create two
activations for one group. SQLite serialises writers already.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from .. import deadlines
from ..models import AlertEvent, EventStatus
from ..tables import activation_alerts, activations, alert_events, held_alerts
from .lookups import Ids, event_from_row
from .state import Activation, ActivationState, AlertKey, Alerts, AlertState

#: The deadline that wakes the evaluator when an activation needs the clock; its outbox row
#: is `deadline.rules.tick` (engine.deadlines).
TICK = "rules.tick"


#: An `activation_alerts` row's values that `save` writes, in `_ALERT_COLUMNS` order.
_AlertRow = tuple[bool, datetime, datetime, datetime | None, int | None]
_ALERT_COLUMNS = ("firing", "first_fired_at", "last_occurred_at", "resolved_at", "last_event_id")


def _alert_row(alert: AlertState) -> _AlertRow:
    event_id = int(alert.last_event_id) if alert.last_event_id.isdigit() else None
    return (alert.firing, alert.first_fired_at, alert.last_occurred_at, alert.resolved_at, event_id)


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


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
    """`engine.activations.state.State` on the store, with an identity map per transaction.

    With `only_held`, a window's end takes only that held alert (`held_alerts.id`): the
    evaluator replays a window's alerts one at a time when replaying them together fails.
    """

    def __init__(self, ids: Ids, *, only_held: int | None = None) -> None:
        self.ids = ids
        self._only_held = only_held
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

    def hold(self, team: str, window: str, event: AlertEvent, rule_id: str) -> None:
        # The window's id names it across teams; the event's row names its source.
        self.conn.execute(
            held_alerts.insert().values(
                window_id=int(window), event_id=int(event.id), rule_id=rule_id
            )
        )

    def take_held(self, window: str) -> list[tuple[AlertEvent, str]]:
        """The window's held alerts not yet released (or only `only_held`), released."""
        query = (
            sa.select(held_alerts.c.id, held_alerts.c.rule_id, alert_events)
            .join(alert_events, alert_events.c.id == held_alerts.c.event_id)
            .where(held_alerts.c.window_id == int(window), held_alerts.c.released_at.is_(None))
            .order_by(held_alerts.c.id)
        )
        if self._only_held is not None:
            query = query.where(held_alerts.c.id == self._only_held)
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


def _inserted(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return int(key[0])
