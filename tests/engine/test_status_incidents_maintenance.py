"""Effective status: override, claims, incidents and maintenance, each change with its cause."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from engine import incidents, maintenance, status
from engine.db import Store
from engine.errors import ValidationError
from engine.models import Impact, IncidentStatus, ServiceStatus
from engine.tables import (
    activations,
    claims,
    incident_updates,
    maintenance_updates,
    outbox,
    services,
    status_changes,
    utcnow,
)
from engine.tables import incidents as incidents_table
from tests.factories import service, team


def _status(store: Store, service_id: int) -> str:
    with store.read() as conn:
        return str(
            conn.execute(
                sa.select(services.c.status).where(services.c.id == service_id)
            ).scalar_one()
        )


def _claim(conn: sa.Connection, team_id: int, service_id: int, claim_status: str) -> int:
    now = utcnow()
    activation = conn.execute(
        activations.insert().values(
            team_id=team_id, rule_id="r", group_key="g", state="active", started_at=now
        )
    ).inserted_primary_key
    assert activation is not None
    inserted = conn.execute(
        claims.insert().values(
            service_id=service_id, activation_id=activation[0], status=claim_status, rule_id="r"
        )
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def test_the_worst_open_claim_wins_and_releasing_one_keeps_the_other(store: Store) -> None:
    with store.begin() as conn:
        t = team(conn)
        api = service(conn, t, "api")
        a = _claim(conn, t, api, "degraded")
        _claim(conn, t, api, "major_outage")
        status.recompute(conn, [api], cause_kind="rule", cause={"rule": "r"})
    assert _status(store, api) == "major_outage"
    with store.begin() as conn:
        conn.execute(claims.update().where(claims.c.id != a).values(released_at=utcnow()))
        status.recompute(conn, [api], cause_kind="rule", cause={"rule": "r"})
    assert _status(store, api) == "degraded"
    with store.read() as conn:
        changes = conn.execute(
            sa.select(
                status_changes.c.old_status,
                status_changes.c.new_status,
                status_changes.c.cause_kind,
            ).order_by(status_changes.c.id)
        ).all()
    assert [tuple(c) for c in changes] == [
        ("operational", "major_outage", "rule"),
        ("major_outage", "degraded", "rule"),
    ]


def test_a_manual_override_wins_until_it_expires(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        t = team(conn)
        api = service(conn, t, "api")
        _claim(conn, t, api, "major_outage")
        conn.execute(
            services.update()
            .where(services.c.id == api)
            .values(override_status="operational", override_until=now + timedelta(minutes=5))
        )
        status.recompute(conn, [api], cause_kind="override", now=now)
    assert _status(store, api) == "operational"
    with store.begin() as conn:
        status.recompute(conn, [api], cause_kind="expiry", now=now + timedelta(minutes=6))
    assert _status(store, api) == "major_outage"


def test_an_unchanged_status_records_nothing_and_dirties_no_page(store: Store) -> None:
    with store.begin() as conn:
        t = team(conn)
        api = service(conn, t, "api")
        assert status.recompute(conn, [api], cause_kind="rule") == []
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == 0


def test_an_open_incident_sets_its_impact_until_it_resolves(store: Store) -> None:
    with store.begin() as conn:
        t = team(conn)
        db = service(conn, t, "db")
        incident_id = incidents.create(
            conn,
            team_id=t,
            title="DB slow",
            message="Looking",
            impacts={db: ServiceStatus.PARTIAL_OUTAGE},
        )
    assert _status(store, db) == "partial_outage"
    with store.begin() as conn:
        incidents.post_update(conn, incident_id, status="identified", message="Found it")
        incidents.resolve(conn, incident_id, message="Fixed")
    assert _status(store, db) == "operational"
    with store.read() as conn:
        row = conn.execute(
            sa.select(incidents_table).where(incidents_table.c.id == incident_id)
        ).one()
        updates = conn.execute(
            sa.select(incident_updates.c.status, incident_updates.c.affected)
            .where(incident_updates.c.incident_id == incident_id)
            .order_by(incident_updates.c.id)
        ).all()
    assert row.status == IncidentStatus.RESOLVED
    assert row.impact == Impact.MAJOR  # the peak stays after resolving
    assert row.identified_at is not None and row.resolved_at is not None
    assert [u.status for u in updates] == ["investigating", "identified", "resolved"]
    assert updates[0].affected == [
        {"service_id": db, "old_status": "operational", "new_status": "partial_outage"}
    ]
    assert updates[2].affected == [
        {"service_id": db, "old_status": "partial_outage", "new_status": "operational"}
    ]


def test_an_incident_can_be_backdated_but_not_started_in_the_future(store: Store) -> None:
    past = utcnow() - timedelta(hours=3)
    with store.begin() as conn:
        t = team(conn)
        incident_id = incidents.create(conn, team_id=t, title="Earlier outage", started_at=past)
        started = conn.execute(
            sa.select(incidents_table.c.started_at).where(incidents_table.c.id == incident_id)
        ).scalar_one()
        assert abs((started - past).total_seconds()) < 0.01
        with pytest.raises(ValidationError):
            incidents.create(conn, team_id=t, title="x", started_at=utcnow() + timedelta(hours=1))


def test_an_incident_cannot_touch_another_teams_service(store: Store) -> None:
    with store.begin() as conn:
        mine = team(conn, "mine")
        theirs = team(conn, "theirs")
        their_db = service(conn, theirs, "db")
        with pytest.raises(ValidationError):
            incidents.create(conn, team_id=mine, title="x", impacts={their_db: "major_outage"})


def test_maintenance_moves_through_its_states_by_deadline(store: Store) -> None:
    from engine import deadlines

    now = utcnow()
    with store.begin() as conn:
        t = team(conn)
        db = service(conn, t, "db")
        window = maintenance.create(
            conn,
            team_id=t,
            title="DB upgrade",
            starts_at=now + timedelta(minutes=1),
            ends_at=now + timedelta(minutes=2),
            service_ids=[db],
            now=now,
        )
    assert _status(store, db) == "operational"
    assert deadlines.fire_due(store, now + timedelta(seconds=61)) == 1
    with store.begin() as conn:
        assert maintenance.start(conn, window, now=now + timedelta(seconds=61))
        assert not maintenance.start(conn, window)  # a second delivery does nothing
    assert _status(store, db) == "under_maintenance"
    assert deadlines.fire_due(store, now + timedelta(seconds=121)) == 1
    with store.begin() as conn:
        assert maintenance.complete(conn, window, now=now + timedelta(seconds=121))
    assert _status(store, db) == "operational"
    with store.read() as conn:
        steps = (
            conn.execute(
                sa.select(maintenance_updates.c.status)
                .where(maintenance_updates.c.window_id == window)
                .order_by(maintenance_updates.c.id)
            )
            .scalars()
            .all()
        )
        ended = (
            conn.execute(sa.select(outbox.c.payload).where(outbox.c.kind == "maintenance.ended"))
            .scalars()
            .all()
        )
    assert steps == ["scheduled", "in_progress", "completed"]
    assert ended == [{"window_id": window, "on_end": "replay", "service_ids": [db]}]


def _window_started_a_minute_ago(
    conn: sa.Connection, team_id: int, service_id: int, now: datetime
) -> None:
    maintenance.create(
        conn,
        team_id=team_id,
        title="Now",
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        service_ids=[service_id],
        now=now,
    )


def test_a_window_whose_start_has_passed_starts_at_once(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        t = team(conn)
        db = service(conn, t, "db")
        _window_started_a_minute_ago(conn, t, db, now)
    assert _status(store, db) == "under_maintenance"


def test_degraded_beats_maintenance(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        t = team(conn)
        db = service(conn, t, "db")
        _window_started_a_minute_ago(conn, t, db, now)
        _claim(conn, t, db, "degraded")
        status.recompute(conn, [db], cause_kind="rule")
    assert _status(store, db) == "degraded"
