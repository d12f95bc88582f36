"""The page snapshot: what a page shows, read from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine import pagedata
from engine.db import Store
from engine.errors import NotFoundError
from engine.models import Impact, IncidentStatus, ServiceStatus
from tests import factories as factory

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=400)


def build(conn):
    team = factory.team(conn)
    other = factory.team(conn, "other")
    api = factory.service(conn, team, "api", name="Public API", created_at=OLD)
    db = factory.service(conn, team, "db", name="Database", created_at=OLD, status="degraded")
    web = factory.service(conn, team, "web", name="Website", created_at=NOW - timedelta(days=3))
    hidden = factory.service(conn, team, "batch", created_at=OLD)
    foreign = factory.service(conn, other, "theirs", created_at=OLD)
    page = factory.page(conn, team, time_zone="Europe/Berlin")
    core = factory.group(conn, page, "Core", position=1)
    factory.add_service(conn, page, web, position=0)
    factory.add_service(conn, page, db, position=2, group_id=core)
    factory.add_service(conn, page, api, position=1, group_id=core)
    return {
        "team": team,
        "other": other,
        "api": api,
        "db": db,
        "web": web,
        "hidden": hidden,
        "foreign": foreign,
        "page": page,
    }


def test_it_lists_components_in_page_order_with_group_status(store: Store) -> None:
    with store.begin() as conn:
        ids = build(conn)
        snap = pagedata.load_page(conn, ids["page"], NOW)
    assert [c.service_key for c in snap.components] == ["web", "api", "db"]
    (core,) = snap.groups
    assert core.name == "Core" and core.status is ServiceStatus.DEGRADED
    assert core.component_ids == tuple(c.public_id for c in snap.components[1:])
    assert snap.components[0].group_id is None
    assert snap.status.indicator is Impact.MINOR
    assert snap.status.description == "Partially Degraded Service"
    assert snap.page.slug == "acme" and snap.page.time_zone == "Europe/Berlin"


def test_it_gives_ninety_days_of_uptime_with_no_data_before_creation(store: Store) -> None:
    with store.begin() as conn:
        ids = build(conn)
        # A 6-hour major outage yesterday (Berlin day 28 November: 23:00 UTC on the 27th).
        start = datetime(2026, 11, 28, 3, tzinfo=UTC)
        factory.change(conn, ids["api"], "operational", "major_outage", start)
        factory.change(conn, ids["api"], "major_outage", "operational", start + timedelta(hours=6))
        snap = pagedata.load_page(conn, ids["page"], NOW)
    web, api, _db = snap.components
    assert len(api.uptime_days) == 90 and len(snap.uptime_days) == 90
    yesterday = api.uptime_days[-2]
    assert yesterday.uptime == pytest.approx(0.75)
    assert yesterday.worst is ServiceStatus.MAJOR_OUTAGE
    assert all(d.uptime is None for d in web.uptime_days[:-4])
    assert web.uptime_days[-1].uptime == pytest.approx(1.0)
    assert api.uptime is not None and 0.99 < api.uptime < 1.0


def test_it_shows_open_and_recent_incidents_of_its_services_only(store: Store) -> None:
    with store.begin() as conn:
        ids = build(conn)
        open_id = factory.incident(
            conn,
            ids["team"],
            "API errors",
            started_at=NOW - timedelta(hours=1),
            impacts={ids["api"]: "partial_outage"},
            updates=[("investigating", "Looking into it", NOW - timedelta(hours=1))],
        )
        factory.incident(
            conn,
            ids["team"],
            "Old DB blip",
            started_at=NOW - timedelta(days=3),
            resolved_at=NOW - timedelta(days=3) + timedelta(hours=1),
            status="resolved",
            impacts={ids["db"]: "degraded"},
            impact="minor",
        )
        factory.incident(
            conn,
            ids["team"],
            "Batch only",
            started_at=NOW - timedelta(hours=2),
            impacts={ids["hidden"]: "major_outage"},
        )
        factory.incident(
            conn,
            ids["other"],
            "Someone else's",
            started_at=NOW - timedelta(hours=2),
            impacts={ids["foreign"]: "major_outage"},
        )
        snap = pagedata.load_page(conn, ids["page"], NOW)
        permalink = pagedata.load_incident(conn, ids["page"], snap.incidents[0].public_id)
    assert [i.title for i in snap.incidents] == ["API errors", "Old DB blip"]
    (active,) = snap.open_incidents
    assert active.id == open_id and active.status is IncidentStatus.INVESTIGATING
    assert active.impacts == ((snap.components[1].public_id, ServiceStatus.PARTIAL_OUTAGE),)
    (update,) = active.updates
    assert update.body == "Looking into it"
    assert update.affected is not None
    assert update.affected[0].name == "Public API"
    assert [i.title for i in snap.history()] == ["Old DB blip"]
    # The open incident's impact (major) outranks the degraded database.
    assert snap.status.indicator is Impact.MAJOR
    assert permalink is not None and permalink.title == "API errors"
    # The incident was on the API during today's (Berlin) day: the bar says so.
    assert snap.components[1].uptime_days[-1].incidents[0].title == "API errors"


def test_the_archive_pages_back_through_older_incidents(store: Store) -> None:
    with store.begin() as conn:
        ids = build(conn)
        for n in range(5):
            factory.incident(
                conn,
                ids["team"],
                f"Incident {n}",
                started_at=NOW - timedelta(days=30 * (n + 1)),
                resolved_at=NOW - timedelta(days=30 * (n + 1)) + timedelta(hours=1),
                status="resolved",
                impacts={ids["api"]: "major_outage"},
            )
        first = pagedata.load_incidents(conn, ids["page"], limit=2)
        more = pagedata.load_incidents(conn, ids["page"], before=first[-1].started_at, limit=2)
        hidden = pagedata.load_incident(conn, ids["page"], "nosuchid")
    assert [i.title for i in first] == ["Incident 0", "Incident 1"]
    assert [i.title for i in more] == ["Incident 2", "Incident 3"]
    assert hidden is None


def test_it_lists_upcoming_and_active_maintenance(store: Store) -> None:
    with store.begin() as conn:
        ids = build(conn)
        factory.maintenance(
            conn,
            ids["team"],
            "DB upgrade",
            starts_at=NOW + timedelta(days=2),
            ends_at=NOW + timedelta(days=2, hours=4),
            service_ids=[ids["db"]],
        )
        factory.maintenance(
            conn,
            ids["team"],
            "Network work",
            starts_at=NOW - timedelta(hours=1),
            ends_at=NOW + timedelta(hours=1),
            service_ids=[ids["api"]],
            status="in_progress",
        )
        factory.maintenance(
            conn,
            ids["other"],
            "Not ours",
            starts_at=NOW + timedelta(days=1),
            ends_at=NOW + timedelta(days=1, hours=1),
            service_ids=[ids["foreign"]],
        )
        snap = pagedata.load_page(conn, ids["page"], NOW)
    assert [m.title for m in snap.upcoming_maintenances] == ["DB upgrade"]
    assert [m.title for m in snap.active_maintenances] == ["Network work"]
    assert snap.active_maintenances[0].component_ids == (snap.components[1].public_id,)


def test_an_unknown_page_is_not_found(store: Store) -> None:
    with store.read() as conn, pytest.raises(NotFoundError):
        pagedata.load_page(conn, 9999, NOW)


def test_a_notice_on_no_service_shows_on_every_page_of_its_team(store: Store) -> None:
    with store.begin() as conn:
        ids = build(conn)
        factory.incident(
            conn,
            ids["team"],
            "Support lines are busy",
            started_at=NOW - timedelta(minutes=10),
            impacts={},
            impact="none",
        )
        factory.incident(
            conn,
            ids["other"],
            "Another team's notice",
            started_at=NOW - timedelta(minutes=10),
            impacts={},
        )
        snap = pagedata.load_page(conn, ids["page"], NOW)
    assert [i.title for i in snap.open_incidents] == ["Support lines are busy"]
    assert snap.open_incidents[0].impacts == ()
    # A notice without impact does not change the page's status.
    assert snap.status.description == "Partially Degraded Service"


def test_a_page_without_services_is_all_operational(store: Store) -> None:
    with store.begin() as conn:
        team = factory.team(conn)
        page = factory.page(conn, team, "empty")
        snap = pagedata.load_page(conn, page, NOW)
    assert snap.components == () and snap.groups == ()
    assert snap.status.indicator is Impact.NONE
    assert snap.status.description == "All Systems Operational"
    assert len(snap.uptime_days) == 90


def test_an_unknown_time_zone_falls_back_to_utc(store: Store) -> None:
    with store.begin() as conn:
        team = factory.team(conn)
        page = factory.page(conn, team, "tz", time_zone="Mars/Olympus_Mons")
        snap = pagedata.load_page(conn, page, NOW)
    assert snap.uptime_days[-1] == NOW.date()
    assert snap.page.url == "/p/tz"
