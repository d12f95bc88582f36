"""Coalescing and limits (issue 15, item 2): steps of one incident, window or component
close together reach a person as one message with the latest state, a state that came back
within the window sends nothing, an hourly cap holds storms and the next message says what
it held back; each step still goes once, across re-runs, restarts and workers. On SQLite
(embedded), PostgreSQL, and PostgreSQL with Redis (scaled).

Time: the code reads the wall clock, and the store holds every time it acts on (when rows
are due, when messages were sent, when deadlines fire); `_advance` moves all of those back,
which is the store's view of the clock moving forward.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import incidents, status
from engine.runtime import Runtime, install
from engine.settings import Settings
from engine.tables import deadlines, deliveries, services, utcnow
from tests.conftest import REDIS_URL
from tests.support import RecordingServer
from workers import coalesce, fanout

from .conftest import (
    Site,
    advance,
    drain,
    emails,
    make_site,
    open_incident,
    sent_json,
    settings_for,
    sms_sent,
)
from .test_notifications import hook_bodies, subscribe


def _maker(
    request: pytest.FixtureRequest,
    mode: str,
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
) -> Callable[..., Runtime]:
    """Runtimes of one store (a second call is the same installation after a restart)."""
    extra: dict[str, str] = {}
    if mode != "sqlite":
        extra["BEACON_DATABASE_URL"] = request.getfixturevalue("pg_url")
    if mode == "scaled":
        extra["BEACON_REDIS_URL"] = REDIS_URL
        extra["BEACON_REDIS_PREFIX"] = request.getfixturevalue("redis_prefix")
        extra["BEACON_SECRET_KEY"] = secrets.token_hex(32)

    def runtime(**env: str) -> Runtime:
        return install(make_runtime(settings_for(tmp_path, server, **extra, **env)))

    return runtime


@pytest.fixture(params=["sqlite", "postgres"])
def make(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
) -> Callable[..., Runtime]:
    """Embedded (SQLite) and PostgreSQL runtimes."""
    return _maker(request, request.param, tmp_path, server, make_runtime)


@pytest.fixture
def make_scaled(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    server: RecordingServer,
    make_runtime: Callable[..., Runtime],
) -> Callable[..., Runtime]:
    """Scaled-mode runtimes: PostgreSQL and Redis, RQ jobs run by a worker. (One test: a
    second in-process RQ worker of the session can wait a minute on its Redis pub/sub
    thread at teardown, which is the harness's, not Beacon's.)"""
    return _maker(request, "scaled", tmp_path, server, make_runtime)


def _statuses(rt: Runtime) -> list[tuple[str, str]]:
    with rt.store.read() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.message, deliveries.c.status)
            .where(deliveries.c.thread.is_not(None))
            .order_by(deliveries.c.id)
        )
        return [(r.message["channel"], r.status) for r in rows]


def _update(rt: Runtime, incident_id: int, status_: str, message: str) -> int:
    with rt.store.begin() as conn:
        return incidents.post_update(conn, incident_id, status=status_, message=message)


def _people(rt: Runtime, site: Site) -> None:
    subscribe(rt, site, "email", "eve@example.com")
    subscribe(rt, site, "sms", "+4915112345678")


def test_steps_within_the_window_go_out_as_one_message_with_the_latest_state(
    make: Callable[..., Runtime], server: RecordingServer
) -> None:
    rt = make()
    site = make_site(rt)
    _people(rt, site)
    subscribe(rt, site, "webhook", f"{server.url}/hook")
    incident = open_incident(rt, site)
    drain(rt)
    assert len(emails(server)) == 1 and len(sms_sent(server)) == 1  # the first goes at once
    _update(rt, incident, "identified", "A bad deploy.")
    _update(rt, incident, "monitoring", "Rolled back; watching.")
    drain(rt)
    assert len(emails(server)) == 1 and len(sms_sent(server)) == 1  # the window holds them
    # Machines get every step, as Statuspage sends them.
    assert len([b for b in hook_bodies(server) if "incident" in b]) == 3
    advance(rt, timedelta(seconds=31))
    drain(rt)
    first, second = emails(server)
    assert "Monitoring - Rolled back; watching." in second.text
    assert "A bad deploy" not in second.text
    assert "1 more update to API errors since" in second.text
    assert "1 more update to API errors since" in second.html
    assert "more update" not in first.text
    _, sms = sms_sent(server)
    assert sms["Body"].startswith("Acme Status: (+1 update) API errors - Monitoring")
    assert _statuses(rt).count(("email", "superseded")) == 1
    # Running every step's work again sends nothing more.
    with rt.store.read() as conn:
        ids = conn.execute(sa.text("select id from incident_updates")).scalars().all()
    fanout.handle_incident_update(rt, [{"update_id": i} for i in ids])
    drain(rt)
    assert len(emails(server)) == 2 and len(sms_sent(server)) == 2


def test_an_update_then_its_revert_within_the_window_sends_nothing(
    make: Callable[..., Runtime], server: RecordingServer
) -> None:
    rt = make()
    site = make_site(rt)
    _people(rt, site)
    incident = open_incident(rt, site)
    drain(rt)
    _update(rt, incident, "identified", "Found it, we think.")
    _update(rt, incident, "investigating", "We are investigating.")  # as it was
    drain(rt)
    advance(rt, timedelta(seconds=31))
    drain(rt)
    assert len(emails(server)) == 1 and len(sms_sent(server)) == 1
    assert ("email", "unchanged") in _statuses(rt)


def _set_override(rt: Runtime, site: Site, value: str | None) -> None:
    service_id = site.service_ids["db"]
    with rt.store.begin() as conn:
        until = utcnow() + timedelta(hours=1) if value else None
        conn.execute(
            services.update()
            .where(services.c.id == service_id)
            .values(override_status=value, override_until=until)
        )
        status.recompute(conn, [service_id], cause_kind="override")


def test_a_status_that_flaps_back_within_the_window_tells_people_nothing(
    make: Callable[..., Runtime], server: RecordingServer
) -> None:
    rt = make()
    site = make_site(rt, notify_component_changes=True)
    _people(rt, site)
    subscribe(rt, site, "webhook", f"{server.url}/hook")
    _set_override(rt, site, "degraded")
    drain(rt)
    _set_override(rt, site, None)
    drain(rt)
    assert emails(server) == [] and sms_sent(server) == []  # a bare change waits the window
    advance(rt, timedelta(seconds=31))
    drain(rt)
    assert emails(server) == [] and sms_sent(server) == []
    assert len(hook_bodies(server)) == 2  # webhooks heard both changes
    # A change that stays is told once the window is over.
    _set_override(rt, site, "partial_outage")
    drain(rt)
    advance(rt, timedelta(seconds=31))
    drain(rt)
    (mail,) = emails(server)
    assert mail.subject == "[Acme Status] DB service: Partial Outage"


def test_the_hourly_cap_holds_a_storm_and_the_next_message_says_what_it_held(
    make: Callable[..., Runtime], server: RecordingServer
) -> None:
    rt = make(BEACON_NOTIFY_WINDOW="0", BEACON_NOTIFY_HOURLY_CAP="3")
    site = make_site(rt)
    _people(rt, site)
    incident = open_incident(rt, site)
    drain(rt)
    for n in range(1, 7):
        _update(rt, incident, "identified", f"Step {n}.")
        drain(rt)
    assert len(emails(server)) == 3 and len(sms_sent(server)) == 3
    with rt.store.read() as conn:
        waiting = conn.execute(
            sa.select(deliveries.c.next_attempt_at, deliveries.c.last_error).where(
                deliveries.c.status == "pending"
            )
        ).all()
    assert len(waiting) == 2  # one per person: the latest step, holding the others' place
    assert all("held back: 3 messages in the last hour" in (w.last_error or "") for w in waiting)
    advance(rt, timedelta(minutes=61))
    drain(rt)
    mails = emails(server)
    assert len(mails) == 4
    assert "Step 6." in mails[-1].text
    assert "3 more updates to API errors since" in mails[-1].text  # steps 3, 4 and 5
    assert sms_sent(server)[-1]["Body"].startswith("Acme Status: (+3 updates) API errors")


def test_a_waiting_message_survives_a_restart(
    make: Callable[..., Runtime], server: RecordingServer
) -> None:
    rt = make()
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    incident = open_incident(rt, site)
    drain(rt)
    _update(rt, incident, "resolved", "All good.")
    drain(rt)
    assert len(emails(server)) == 1
    rt.close()
    again = make()  # the same store: a new process after a restart
    advance(again, timedelta(seconds=31))
    drain(again)
    drain(again)
    first, resolved = emails(server)
    assert resolved.subject == "[Acme Status] API errors (resolved)"


def test_the_sweeper_sends_a_waiting_message_whose_deadline_was_lost(
    make: Callable[..., Runtime], server: RecordingServer
) -> None:
    rt = make()
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    incident = open_incident(rt, site)
    drain(rt)
    _update(rt, incident, "monitoring", "Watching.")
    drain(rt)
    with rt.store.begin() as conn:
        conn.execute(deadlines.delete().where(deadlines.c.kind == fanout.RESUME))
    advance(rt, timedelta(seconds=31))
    fanout.handle_sweep(rt, [])
    drain(rt)
    assert len(emails(server)) == 2


def test_an_older_step_never_follows_a_newer_one(
    make: Callable[..., Runtime], server: RecordingServer
) -> None:
    rt = make(BEACON_NOTIFY_WINDOW="0")
    site = make_site(rt)
    subscribe(rt, site, "email", "eve@example.com")
    incident = open_incident(rt, site)
    drain(rt)
    with rt.store.begin() as conn:  # two steps whose work runs in the wrong order
        older = incidents.post_update(conn, incident, status="identified", notify=False)
        newer = incidents.post_update(conn, incident, status="monitoring", notify=False)
        for update_id in (older, newer):
            conn.execute(
                sa.text("update incident_updates set deliver_notifications = :t where id = :id"),
                {"t": True, "id": update_id},
            )
    fanout.handle_incident_update(rt, [{"update_id": newer}])
    fanout.handle_incident_update(rt, [{"update_id": older}])
    mails = emails(server)
    assert len(mails) == 2 and "Monitoring" in mails[-1].text
    assert ("email", "superseded") in _statuses(rt)


def test_the_window_and_cap_are_settings_with_clear_errors(tmp_path: Path) -> None:
    base: dict[str, Any] = {"BEACON_DATA_DIR": str(tmp_path)}
    defaults = Settings.from_env(base)
    assert (defaults.notify_window, defaults.notify_hourly_cap) == (30.0, 20)
    policy = coalesce.Policy.of(Settings.from_env({**base, "BEACON_NOTIFY_WINDOW": "0"}))
    assert policy.window == timedelta(0)
    from engine.errors import ConfigError

    for name, value in (
        ("BEACON_NOTIFY_WINDOW", "soon"),
        ("BEACON_NOTIFY_WINDOW", "-1"),
        ("BEACON_NOTIFY_HOURLY_CAP", "-5"),
        ("BEACON_NOTIFY_HOURLY_CAP", "many"),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**base, name: value})


def test_in_scaled_mode_steps_coalesce_and_a_waiting_message_survives_a_restart(
    make_scaled: Callable[..., Runtime], server: RecordingServer
) -> None:
    rt = make_scaled(BEACON_NOTIFY_WINDOW="600")
    site = make_site(rt)
    _people(rt, site)
    incident = open_incident(rt, site)
    drain(rt)
    _update(rt, incident, "identified", "A bad deploy.")
    _update(rt, incident, "resolved", "Rolled back.")
    drain(rt)
    assert len(emails(server)) == 1 and len(sms_sent(server)) == 1
    rt.close()
    again = make_scaled(BEACON_NOTIFY_WINDOW="600")
    advance(again, timedelta(seconds=601))
    drain(again)
    first, resolved = emails(server)
    assert resolved.subject == "[Acme Status] API errors (resolved)"
    assert "1 more update to API errors since" in resolved.text
    assert len(sms_sent(server)) == 2


def test_one_sendgrid_request_carries_each_recipients_own_summary_or_none(
    make: Callable[..., Runtime], server: RecordingServer
) -> None:
    """In one batch, one person's message sums up two steps and the other's is one step:
    each gets their own line (SendGrid substitutes it per personalization), or none."""
    rt = make()
    site = make_site(rt)
    subscribe(rt, site, "email", "ann@example.com")
    incident = open_incident(rt, site)
    drain(rt)  # ann: told at once
    subscribe(rt, site, "email", "bob@example.com")
    _update(rt, incident, "identified", "A bad deploy.")
    drain(rt)  # bob: his first message, at once; ann's waits
    _update(rt, incident, "monitoring", "Rolled back.")
    drain(rt)  # takes the place of ann's; bob's waits (he was just told)
    advance(rt, timedelta(seconds=61))
    drain(rt)
    last = [m for m in sent_json(server) if "personalizations" in m][-1]
    assert sorted(p["to"][0]["email"] for p in last["personalizations"]) == [
        "ann@example.com",
        "bob@example.com",
    ]
    latest = {e.to: e for e in emails(server) if "Rolled back." in e.text}
    assert "1 more update to API errors since" in latest["ann@example.com"].text
    assert "1 more update to API errors since" in latest["ann@example.com"].html
    assert "more update" not in latest["bob@example.com"].text
    assert "-beacon-" not in latest["bob@example.com"].text + latest["bob@example.com"].html
