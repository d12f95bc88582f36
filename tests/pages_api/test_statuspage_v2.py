"""The Statuspage v2 API checked against real Statuspage responses, endpoint by endpoint,
on a page with groups, incidents and maintenances."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from engine import deadlines, maintenance
from engine.tables import utcnow
from workers.dispatch import dispatch_once

from . import seed
from .conftest import App
from .shapes import ENDPOINTS, problems

V2 = "/p/acme/api/v2/"


@pytest.fixture
def rich(app: App) -> seed.RichPage:
    return seed.rich_page(app.store)


def get(app: App, name: str, **kwargs: Any) -> dict[str, Any]:
    response = app.client.get(V2 + name, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_every_endpoint_has_statuspages_keys_types_and_enums(
    app: App, rich: seed.RichPage, endpoint: str
) -> None:
    doc = get(app, ENDPOINTS[endpoint])
    for key, value in doc.items():
        if isinstance(value, list):
            assert value, f"{endpoint}: {key} is empty, so nothing in it was checked"
    assert problems(endpoint, doc) == []


def test_summary_holds_open_incidents_and_upcoming_and_active_maintenances(
    app: App, rich: seed.RichPage
) -> None:
    doc = get(app, "summary.json")
    assert [i["id"] for i in doc["incidents"]] == [rich.open_incident]
    assert [m["id"] for m in doc["scheduled_maintenances"]] == [rich.active, rich.upcoming]
    assert doc["status"] == {"indicator": "major", "description": "Partial System Outage"}
    assert doc["page"]["id"] == rich.page.public_id
    assert doc["page"]["url"] == "http://127.0.0.1:8000/p/acme"


def test_groups_are_components_listing_their_members(app: App, rich: seed.RichPage) -> None:
    comps = get(app, "components.json")["components"]
    by_name = {c["name"]: c for c in comps}
    core, edge = by_name["Core"], by_name["Edge"]
    ids = rich.page.component_ids
    assert core["group"] is True and core["id"] == rich.page.group_ids["Core"]
    assert core["components"] == [ids["api"], ids["db"]]
    assert by_name["Public API"]["group_id"] == core["id"]
    assert by_name["Website"]["group_id"] is None and "components" not in by_name["Website"]
    assert edge["components"] == [ids["cdn"]]
    # A group's status is the worst of its services.
    assert core["status"] == "partial_outage" and edge["status"] == "under_maintenance"
    assert [c["position"] for c in comps] == list(range(1, len(comps) + 1))
    assert [c["name"] for c in comps] == [
        "Core",
        "Public API",
        "Database",
        "Website",
        "Edge",
        "CDN",
    ]


def test_component_ids_are_the_stored_stable_ids(
    app: App, rich: seed.RichPage, no_render_interval: None
) -> None:
    first = {c["name"]: c["id"] for c in get(app, "components.json")["components"]}
    with app.store.begin() as conn:
        maintenance.complete(conn, app_window(app, rich.active))
    run_due(app, utcnow())
    comps = get(app, "components.json")["components"]
    again = {c["name"]: c["id"] for c in comps}
    assert first == again
    # The page was re-rendered: the ended maintenance no longer shows.
    assert {c["name"]: c["status"] for c in comps}["CDN"] == "operational"
    assert first["Public API"] == rich.page.component_ids["api"]


def app_window(app: App, public_id: str) -> int:
    import sqlalchemy as sa

    from engine.tables import maintenance_windows

    with app.store.read() as conn:
        query = sa.select(maintenance_windows.c.id).where(
            maintenance_windows.c.public_id == public_id
        )
        return int(conn.execute(query).scalar_one())


def test_service_statuses_map_to_component_statuses(app: App, rich: seed.RichPage) -> None:
    comps = {c["name"]: c["status"] for c in get(app, "components.json")["components"]}
    assert comps["Public API"] == "partial_outage"
    assert comps["CDN"] == "under_maintenance"
    assert comps["Database"] == "operational"


def test_incidents_carry_updates_with_affected_components(app: App, rich: seed.RichPage) -> None:
    incidents = get(app, "incidents.json")["incidents"]
    assert [i["id"] for i in incidents] == [rich.open_incident, rich.resolved_incident]
    open_one, old = incidents
    assert open_one["status"] == "identified" and open_one["impact"] == "major"
    assert [u["status"] for u in open_one["incident_updates"]] == ["identified", "investigating"]
    first = open_one["incident_updates"][-1]
    assert first["affected_components"] == [
        {
            "code": rich.page.component_ids["api"],
            "name": "Public API",
            "old_status": "operational",
            "new_status": "partial_outage",
        }
    ]
    assert first["incident_id"] == open_one["id"]
    assert [c["id"] for c in open_one["components"]] == [rich.page.component_ids["api"]]
    assert open_one["shortlink"] == f"http://127.0.0.1:8000/p/acme/incidents/{open_one['id']}"
    assert old["status"] == "resolved" and old["impact"] == "minor"
    assert old["resolved_at"] is not None
    unresolved = get(app, "incidents/unresolved.json")["incidents"]
    assert [i["id"] for i in unresolved] == [rich.open_incident]


def test_scheduled_maintenances_have_their_window_and_state(app: App, rich: seed.RichPage) -> None:
    every = get(app, "scheduled-maintenances.json")["scheduled_maintenances"]
    states = {m["id"]: m["status"] for m in every}
    assert states == {
        rich.upcoming: "scheduled",
        rich.active: "in_progress",
        rich.completed: "completed",
    }
    assert all(m["impact"] == "maintenance" for m in every)
    active = get(app, "scheduled-maintenances/active.json")["scheduled_maintenances"]
    assert [m["id"] for m in active] == [rich.active]
    assert active[0]["scheduled_for"] < active[0]["scheduled_until"]
    assert [u["status"] for u in active[0]["incident_updates"]] == ["in_progress", "scheduled"]
    upcoming = get(app, "scheduled-maintenances/upcoming.json")["scheduled_maintenances"]
    assert [m["id"] for m in upcoming] == [rich.upcoming]


def run_due(app: App, at: datetime) -> None:
    """What the dispatcher and workers do by the time the clock reads `at`: fire due
    deadlines, run their outbox rows, and the renders those ask for, until all is done."""
    for _ in range(10):
        fired = deadlines.fire_due(app.store, at)
        claimed = dispatch_once(app.runtime)
        app.runtime.queues.worker().work(burst=True, logging_level="WARNING")
        if not fired and not claimed:
            return
    raise AssertionError("work kept coming after 10 rounds")


@pytest.fixture
def no_render_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Renders coalesce on the wall clock; the test moves time by itself instead."""
    from pages import render

    monkeypatch.setattr(render, "RENDER_INTERVAL", 0.0)


def test_maintenances_move_through_their_states_by_themselves(
    app: App, no_render_interval: None
) -> None:
    """Nobody touches the window after scheduling it: its deadlines move it, and the API
    follows: scheduled -> in_progress -> completed."""
    page = seed.page(app.store, "acme")
    now = utcnow()
    with app.store.begin() as conn:
        maintenance.create(
            conn,
            team_id=page.team_id,
            title="Quick restart",
            starts_at=now + timedelta(minutes=1),
            ends_at=now + timedelta(minutes=2),
            service_ids=[page.service_ids["api"]],
        )

    def state() -> tuple[str, str]:
        doc = get(app, "summary.json")
        maint = get(app, "scheduled-maintenances.json")["scheduled_maintenances"][0]
        return maint["status"], doc["components"][0]["status"]

    assert state() == ("scheduled", "operational")
    run_due(app, now + timedelta(seconds=61))
    assert state() == ("in_progress", "under_maintenance")
    assert get(app, "status.json")["status"] == {
        "indicator": "maintenance",
        "description": "Service Under Maintenance",
    }
    run_due(app, now + timedelta(seconds=121))
    assert state() == ("completed", "operational")
    maint = get(app, "scheduled-maintenances.json")["scheduled_maintenances"][0]
    assert [u["status"] for u in maint["incident_updates"]] == [
        "completed",
        "in_progress",
        "scheduled",
    ]


def test_public_page_api_is_cors_open_and_publicly_cacheable(app: App, rich: seed.RichPage) -> None:
    response = app.client.get(V2 + "status.json", headers={"Origin": "https://example.com"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cache-control"].startswith("public")


def test_times_are_in_the_pages_time_zone(app: App) -> None:
    seed.page(app.store, "acme", time_zone="America/Tijuana")
    doc = get(app, "components.json")
    assert doc["page"]["time_zone"] == "America/Tijuana"
    assert doc["page"]["updated_at"][-6:] in ("-08:00", "-07:00")


def test_every_endpoint_fits_the_captures_on_postgresql_too(any_app: App) -> None:
    seed.rich_page(any_app.store)
    for endpoint, name in ENDPOINTS.items():
        assert problems(endpoint, get(any_app, name)) == [], endpoint
