"""Claim maintenance: what keeps the activations' claims and counts right when something
other than an event changes them.

`forget_source_alerts` runs when an alert source is deleted (`engine.sources.delete`),
`release_claim` when an operator releases one claim, `recount_firing_alerts` as the daily
purge's guard (`engine.events.purge`). Each works in the caller's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import deadlines, status
from ..tables import activation_alerts, activations, alert_sources, claims, utcnow
from .state import ActivationState
from .store import TICK

log = logging.getLogger("beacon.rules")


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
