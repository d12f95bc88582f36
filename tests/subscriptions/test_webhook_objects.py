"""The subscriber webhook's incident and component objects are the Statuspage v2 API's: one
serialiser (engine.statuspage) makes both, as Atlassian Statuspage's webhooks carry the
objects of its public API. Delivered for real by the workers to a receiver on loopback."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import incidents, maintenance
from engine.runtime import Runtime
from engine.security import new_token
from engine.tables import incident_updates, status_pages, subscribers, utcnow
from tests.support import RecordingServer

from .conftest import Site, drain, make_site, open_incident

V2 = "/p/acme/api/v2/"


def _hooks(server: RecordingServer) -> list[dict[str, Any]]:
    return [
        json.loads(r["body"])  # type: ignore[arg-type]
        for r in server.requests
        if str(r["path"]).startswith("/hook")
    ]


def _site(rt: Runtime, server: RecordingServer, **page: Any) -> Site:
    site = make_site(rt)
    with rt.store.begin() as conn:
        conn.execute(status_pages.update().where(status_pages.c.id == site.page_id).values(**page))
        conn.execute(
            subscribers.insert().values(
                page_id=site.page_id,
                channel="webhook",
                address=f"{server.url}/hook",
                confirmed=True,
                link_selector=new_token(16),
                webhook_secret="whsec_test",
            )
        )
    return site


def _v2(client: TestClient, name: str) -> dict[str, Any]:
    response = client.get(V2 + name)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_webhooks_incident_and_component_are_the_v2_apis(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    # A page away from UTC that hides uptime: the zone, `showcase` and `start_date` are
    # where the two serialisers used to disagree.
    site = _site(rt, server, time_zone="America/Denver", hide_uptime=True)
    incident_id = open_incident(rt, site)
    drain(rt)
    # The same moment: nothing changed since the workers delivered and rendered.
    api_incidents = {i["id"]: i for i in _v2(client, "incidents.json")["incidents"]}
    api_components = {c["id"]: c for c in _v2(client, "components.json")["components"]}

    hooks = _hooks(server)
    (sent,) = [h["incident"] for h in hooks if "incident" in h]
    assert sent == api_incidents[sent["id"]]
    assert sent["created_at"].endswith("-07:00")  # Denver in December, milliseconds
    assert len(sent["created_at"]) == len("2026-12-07T17:00:00.000-07:00")
    (update,) = sent["incident_updates"]
    assert update["custom_tweet"] is None and update["tweet_id"] is None
    (component,) = sent["components"]
    assert component["showcase"] is False and component["start_date"]

    (changed,) = [h for h in hooks if "component_update" in h]
    assert changed["component"] == api_components[changed["component"]["id"]]
    assert changed["component"]["status"] == "major_outage"
    assert changed["component_update"]["component_id"] == changed["component"]["id"]
    with rt.store.read() as conn:
        public_id = conn.execute(
            sa.select(incidents.incidents.c.public_id).where(
                incidents.incidents.c.id == incident_id
            )
        ).scalar()
    assert sent["id"] == public_id


def test_an_update_with_a_component_new_to_the_incident_is_sent_as_the_v2_api_shows_it(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    """An affected component without an old status: the webhook said null where the API
    says its new status."""
    site = _site(rt, server)
    incident_id = open_incident(rt, site)
    with rt.store.begin() as conn:
        update_id = incidents.post_update(
            conn,
            incident_id,
            status="identified",
            message="The database too.",
            impacts={site.service_ids["api"]: "major_outage", site.service_ids["db"]: "degraded"},
        )
        # Stored without the status before: the engine records one today, but the column is
        # free JSON and both readers have always allowed it to be missing.
        conn.execute(
            incident_updates.update()
            .where(incident_updates.c.id == update_id)
            .values(affected=[{"service_id": site.service_ids["db"], "new_status": "degraded"}])
        )
    drain(rt)
    api = {i["id"]: i for i in _v2(client, "incidents.json")["incidents"]}
    # Both steps' notices were made after both were posted: each sends the incident as the
    # API shows it now, in whatever order the lanes delivered them.
    sent_all = [h["incident"] for h in _hooks(server) if "incident" in h]
    assert len(sent_all) == 2 and all(s == api[s["id"]] for s in sent_all)
    sent = sent_all[-1]
    latest = sent["incident_updates"][0]
    (db,) = [a for a in latest["affected_components"] if a["name"] == "DB service"]
    assert db["old_status"] == db["new_status"] == "degraded_performance"
    assert {c["name"] for c in sent["components"]} == {"API service", "DB service"}


def test_a_maintenance_is_sent_as_the_v2_api_shows_it(
    rt: Runtime, client: TestClient, server: RecordingServer
) -> None:
    site = _site(rt, server, time_zone="Europe/Berlin")
    now = utcnow()
    with rt.store.begin() as conn:
        maintenance.create(
            conn,
            team_id=site.team_id,
            title="Database upgrade",
            starts_at=now + timedelta(days=1),
            ends_at=now + timedelta(days=1, hours=2),
            service_ids=[site.service_ids["db"]],
            message="We upgrade the database.",
            notify=True,
        )
    drain(rt)
    api = {m["id"]: m for m in _v2(client, "scheduled-maintenances.json")["scheduled_maintenances"]}
    (sent,) = [h["incident"] for h in _hooks(server) if "incident" in h]
    assert sent == api[sent["id"]]
    assert sent["impact"] == "maintenance" and sent["scheduled_for"].endswith("+01:00")
