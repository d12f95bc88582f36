"""Operating sources: rate limits across processes, key rotation, retention, the source API."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from engine import deadlines, events, sources
from engine.db import Store
from engine.runtime import Runtime, install
from engine.settings import Settings
from engine.tables import alert_events, alert_sources, outbox, rule_sets, teams, utcnow
from pages.app import create_app
from tests.conftest import REDIS_URL
from tests.intake.conftest import (
    Env,
    add_source,
    add_team,
    api_key,
    firing,
    resolved,
)
from tests.support import wait_for
from workers.dispatch import dispatch_once


def test_rate_limits_read_per_second_minute_and_hour() -> None:
    assert sources.parse_rate_limit("50/s") == sources.RateLimit(50, 1, "50/s")
    assert sources.parse_rate_limit("600/m").seconds == 60
    assert sources.parse_rate_limit("10000/h").seconds == 3600
    for bad in ("50", "0/s", "5/d", "/s", "fast"):
        with pytest.raises(Exception, match="N/s, N/m or N/h"):
            sources.parse_rate_limit(bad)


def test_it_refuses_firing_events_past_the_rate_limit_but_never_a_resolve(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "limited", rate_limit="2/h")
    assert env.post(firing("f1"), key=key).status_code == 202
    assert env.post(firing("f2"), key=key).status_code == 202
    refused = env.post(firing("f3"), key=key)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert "2/h" in refused.json()["error"]["message"]
    assert env.post(resolved("f1"), key=key).status_code == 202


@pytest.fixture
def scaled_pair(
    redis_prefix: str, tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> tuple[Runtime, Runtime]:
    """Two runtimes as two `beacon serve` processes: one store, one real Redis."""
    env = {
        "BEACON_DATA_DIR": str(tmp_path / "shared"),
        "BEACON_REDIS_URL": REDIS_URL,
        "BEACON_SECRET_KEY": "test-secret-" + "k" * 32,
        "BEACON_REDIS_PREFIX": redis_prefix,
    }
    one = make_runtime(Settings.from_env(env))
    two = make_runtime(Settings.from_env(env), upgrade=False)
    return one, two


def test_the_rate_limit_is_counted_across_processes(scaled_pair: tuple[Runtime, Runtime]) -> None:
    one, two = scaled_pair
    team = add_team(one.store, "platform")
    _, key = add_source(one.store, team, "am", rate_limit="3/h")
    answers = []
    with TestClient(create_app(one)) as a, TestClient(create_app(two)) as b:
        for index, client in enumerate([a, b, a, b]):
            answers.append(client.post(f"/api/v1/events/{key}", json=firing(f"x{index}")))
    assert [r.status_code for r in answers] == [202, 202, 202, 429]


def test_a_rotated_key_keeps_working_for_its_grace_period(env: Env) -> None:
    with env.store.begin() as conn:
        rotation = sources.rotate_key(conn, env.source_id, timedelta(hours=1))
    with env.store.read() as conn:
        now = utcnow()
        assert sources.find_by_integration_key(conn, rotation.integration_key, now)
        assert sources.find_by_integration_key(conn, env.key, now)
        assert sources.find_by_integration_key(conn, env.key, now + timedelta(hours=2)) is None


def test_a_rotation_without_grace_retires_the_old_key_at_once(env: Env) -> None:
    with env.store.begin() as conn:
        rotation = sources.rotate_key(conn, env.source_id, timedelta(0))
    with env.store.read() as conn:
        assert sources.find_by_integration_key(conn, env.key) is None
        assert sources.find_by_integration_key(conn, rotation.integration_key) is not None


def old_event(env: Env, days: int) -> None:
    at = utcnow() - timedelta(days=days)
    with env.store.begin() as conn:
        conn.execute(
            alert_events.insert().values(
                source_id=env.source_id,
                dedup_key=f"old-{days}",
                status="firing",
                severity="critical",
                occurred_at=at,
                received_at=at,
                fingerprint=f"old-{days}",
            )
        )


def test_the_purge_deletes_events_older_than_the_retention(env: Env) -> None:
    old_event(env, 40)
    old_event(env, 10)
    assert events.purge(env.store, retention_days=30) == 1
    with env.store.read() as conn:
        keys = conn.execute(sa.select(alert_events.c.dedup_key)).scalars().all()
    assert keys == ["old-10"]


def test_the_daily_purge_corrects_a_wrong_count_of_firing_alerts(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.rules.store_helpers import firing_count, stored_activation

    with env.store.read() as conn:
        team = conn.execute(
            sa.select(alert_sources.c.team_id).where(alert_sources.c.id == env.source_id)
        ).scalar_one()
    act = stored_activation(env.store, team, [(env.source_id, "a", False)], firing=1)
    events.handle_purge(env.runtime, [])
    assert firing_count(env.store, act) == 0
    assert f"activation {act} counted 1 firing alerts but has 0: corrected" in caplog.text


def test_the_first_event_schedules_the_daily_purge_which_reschedules_itself(env: Env) -> None:
    env.post(firing())
    with env.store.read() as conn:
        pending = deadlines.get(conn, events.PURGE_DEADLINE, events.PURGE_KEY)
    assert pending is not None and pending.due_at > utcnow() + timedelta(hours=23)
    old_event(env, 400)
    with env.store.begin() as conn:
        for kind, days in (("noop-old", 8), ("noop-recent", 1)):
            conn.execute(
                outbox.insert().values(
                    kind=kind, payload={}, done_at=utcnow() - timedelta(days=days)
                )
            )
    # Make it due now; the dispatcher's pass and an RQ worker then run it as in production.
    with env.store.begin() as conn:
        deadlines.schedule(conn, events.PURGE_DEADLINE, events.PURGE_KEY, utcnow())
    install(env.runtime)
    dispatch_once(env.runtime)
    env.runtime.queues.worker().work(burst=True, logging_level="WARNING")
    with env.store.read() as conn:
        keys = conn.execute(sa.select(alert_events.c.dedup_key)).scalars().all()
        again = deadlines.get(conn, events.PURGE_DEADLINE, events.PURGE_KEY)
    assert "old-400" not in keys and keys == ["a1"]
    assert again is not None and again.due_at > utcnow() + timedelta(hours=23)
    # Done outbox rows older than a week went with the old events; recent ones stay.
    with env.store.read() as conn:
        kinds = set(conn.execute(sa.select(outbox.c.kind)).scalars())
    assert "noop-old" not in kinds and "noop-recent" in kinds


# --- the source API --------------------------------------------------------------------


def test_the_events_list_shows_recent_events_and_their_outcome(env: Env) -> None:
    env.post(firing("e1"))
    env.post(firing("e2", test=True))
    with env.store.begin() as conn:
        conn.execute(
            alert_events.update()
            .where(alert_events.c.dedup_key == "e1")
            .values(
                evaluated_at=utcnow(), outcome={"result": "no_match", "matched": [], "effects": []}
            )
        )
    env.post(resolved("e1"))
    r = env.client.get("/api/v1/alert-sources/tool/events", headers=api_key(env.store, "platform"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"]["last_event_at"] is not None
    listed = [(e["dedup_key"], e["status"], e["outcome"]["result"]) for e in body["events"]]
    assert listed == [
        ("e1", "resolved", "pending"),
        ("e2", "firing", "test"),
        ("e1", "firing", "no_match"),
    ]


def test_the_events_list_answers_without_why_when_the_rules_cannot_be_read(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.post(firing("e1"))
    with env.store.begin() as conn:
        conn.execute(
            alert_events.update().values(
                evaluated_at=utcnow(), outcome={"result": "no_match", "matched": [], "effects": []}
            )
        )
        # A stored rule set this build cannot read (say, written by a newer one).
        conn.execute(
            rule_sets.insert().values(
                version=7, files={"r.yaml": "version: 99\nrules: nope\n"}, digest="x"
            )
        )
    r = env.client.get("/api/v1/alert-sources/tool/events", headers=api_key(env.store, "platform"))
    assert r.status_code == 200, r.text
    [listed] = r.json()["events"]
    assert listed["outcome"]["result"] == "no_match" and "why" not in listed
    assert "cannot explain unmatched events of source 'tool'" in caplog.text


def test_the_events_list_pages_back(env: Env) -> None:
    for n in range(5):
        env.post(firing(f"p{n}"))
    headers = api_key(env.store, "platform")
    first = env.client.get("/api/v1/alert-sources/tool/events?limit=2", headers=headers).json()
    cursor = first["next_before"]
    second = env.client.get(
        f"/api/v1/alert-sources/tool/events?limit=2&before={cursor}", headers=headers
    ).json()
    assert [e["dedup_key"] for e in first["events"] + second["events"]] == ["p4", "p3", "p2", "p1"]
    bad = env.client.get("/api/v1/alert-sources/tool/events?limit=x", headers=headers)
    assert bad.status_code == 400 and "limit" in bad.json()["error"]["message"]


def test_a_team_key_sees_no_private_teams_sources(env: Env) -> None:
    # A source of a team that is not private is readable by every responder (engine.authz).
    with env.store.begin() as conn:
        conn.execute(teams.update().values(private=True))
    add_team(env.store, "acme")
    other = api_key(env.store, "acme")
    for method, path in [
        ("GET", "events"),
        ("POST", "rotate-key"),
        ("POST", "test"),
    ]:
        r = env.client.request(method, f"/api/v1/alert-sources/tool/{path}", headers=other)
        assert r.status_code == 404, path
    assert env.client.get("/api/v1/alert-sources/tool/events").status_code == 401


def test_an_admin_names_the_team_when_several_share_a_source_key(env: Env) -> None:
    acme = add_team(env.store, "acme")
    add_source(env.store, acme, "tool")
    admin = api_key(env.store, admin=True)
    ambiguous = env.client.get("/api/v1/alert-sources/tool/events", headers=admin)
    assert ambiguous.status_code == 400 and "?team=" in ambiguous.json()["error"]["message"]
    named = env.client.get("/api/v1/alert-sources/tool/events?team=acme", headers=admin)
    assert named.status_code == 200


def test_rotate_key_gives_a_new_key_and_keeps_the_old_one_for_the_grace(env: Env) -> None:
    headers = api_key(env.store, "platform")
    env.post(firing())  # the old key is now cached by the intake
    r = env.client.post(
        "/api/v1/alert-sources/tool/rotate-key", json={"grace": 60}, headers=headers
    )
    assert r.status_code == 200, r.text
    new_key = r.json()["integration_key"]
    assert r.json()["url"].endswith(f"/api/v1/events/{new_key}")
    assert env.post(firing("n1"), key=new_key).status_code == 202
    assert env.post(firing("o1")).status_code == 202
    # Rotating again while the first key is in its grace would stop it at once, which the
    # first rotation promised it would not: refused, and nothing changes.
    again = env.client.post(
        "/api/v1/alert-sources/tool/rotate-key", json={"grace": 0}, headers=headers
    )
    assert again.status_code == 409, again.text
    assert "replace_previous" in again.json()["error"]["message"]
    assert env.post(firing("o2")).status_code == 202
    assert env.post(firing("n2"), key=new_key).status_code == 202
    # Asked for: the first key stops, and without grace the second too, in this process.
    r = env.client.post(
        "/api/v1/alert-sources/tool/rotate-key",
        json={"grace": 0, "replace_previous": True},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert env.post(firing("o3")).status_code == 404
    assert env.post(firing("n3"), key=new_key).status_code == 404
    assert env.post(firing("n4"), key=r.json()["integration_key"]).status_code == 202
    for wrong in ({"grace": -1}, {"grace": "60"}, {"grace": True}, {"replace_previous": 1}):
        bad = env.client.post("/api/v1/alert-sources/tool/rotate-key", json=wrong, headers=headers)
        assert bad.status_code == 422, (wrong, bad.text)


def test_the_test_route_stores_a_test_event_that_is_never_evaluated(env: Env) -> None:
    headers = api_key(env.store, "platform")
    r = env.client.post("/api/v1/alert-sources/tool/test", headers=headers)
    assert r.status_code == 202, r.text
    [shown] = r.json()["normalised"]
    assert shown["test"] is True and shown["source"] == "tool"
    with env.store.read() as conn:
        row = conn.execute(sa.select(alert_events)).one()
        last = conn.execute(sa.select(alert_sources.c.last_event_at)).scalar()
    assert row.test and row.outcome["result"] == "test"
    assert last is None  # Beacon made this one up: the tool has still sent nothing


def test_the_test_route_shows_how_a_pasted_payload_is_normalised(env: Env) -> None:
    headers = api_key(env.store, "platform")
    r = env.client.post("/api/v1/alert-sources/tool/test", json=firing("t9"), headers=headers)
    assert r.status_code == 202
    [shown] = r.json()["normalised"]
    assert (shown["dedup_key"], shown["status"], shown["test"]) == ("t9", "firing", True)
    r = env.client.post("/api/v1/alert-sources/tool/test", json={"alerts": 3}, headers=headers)
    assert r.status_code == 400 and "alerts" in r.json()["error"]["message"]


def test_a_pasted_test_payload_does_not_make_the_real_delivery_a_duplicate(env: Env) -> None:
    headers = api_key(env.store, "platform")
    tried = env.client.post("/api/v1/alert-sources/tool/test", json=firing("t9"), headers=headers)
    assert tried.status_code == 202, tried.text
    real = env.post(firing("t9"))
    assert real.status_code == 202 and real.json()["duplicates"] == 0, real.text
    with env.store.read() as conn:
        rows = conn.execute(sa.select(alert_events.c.test).order_by(alert_events.c.id)).all()
    assert [r.test for r in rows] == [True, False]
    # And the other way round: the tool's retry is still one, the test is not one.
    assert env.post(firing("t9")).json()["duplicates"] == 1
    again = env.client.post("/api/v1/alert-sources/tool/test", json=firing("t9"), headers=headers)
    assert again.status_code == 202


def test_a_retried_delivery_is_never_refused_by_the_rate_limit(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "limited", rate_limit="1/h")
    assert env.post(firing("f1"), key=key).status_code == 202
    # The tool timed out and sends it again, past the limit: a retry, answered as one.
    again = env.post(firing("f1"), key=key)
    assert again.status_code == 202 and again.json()["duplicates"] == 1, again.text
    assert env.post(firing("f2"), key=key).status_code == 429
    # A delivery with a retry and a new alert: the new one is refused, the retry is not.
    both = {"alerts": firing("f1")["alerts"] + firing("f3")["alerts"]}
    r = env.post(both, key=key)
    assert r.status_code == 429
    assert "1 firing event(s) refused; 1 accepted" in r.json()["error"]["message"]
    with env.store.read() as conn:
        stored = conn.execute(sa.select(alert_events.c.dedup_key)).scalars().all()
    assert stored == ["f1"]


def test_a_rate_limit_lets_alerts_in_when_redis_is_down(
    tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> None:
    from tests.conftest import free_port

    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path / "data"),
            "BEACON_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "BEACON_SECRET_KEY": "k" * 32,
        }
    )
    rt = make_runtime(settings)
    team = add_team(rt.store, "platform")
    _, key = add_source(rt.store, team, "am", rate_limit="1/h")
    with TestClient(create_app(rt)) as client:
        answers = [client.post(f"/api/v1/events/{key}", json=firing(f"r{n}")) for n in range(3)]
    assert [r.status_code for r in answers] == [202, 202, 202]


def test_a_mixed_delivery_past_the_limit_keeps_its_resolves(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "mixed", rate_limit="1/h")
    assert env.post(firing("m0"), key=key).status_code == 202
    mixed = {
        "alerts": [
            {"id": "m1", "state": "down", "at": "2026-11-29T10:00:00Z"},
            {"id": "m0", "state": "up", "at": "2026-11-29T10:05:00Z"},
        ]
    }
    r = env.post(mixed, key=key)
    assert r.status_code == 429
    assert "1 firing event(s) refused; 1 accepted" in r.json()["error"]["message"]
    with env.store.read() as conn:
        stored = conn.execute(
            sa.select(alert_events.c.dedup_key, alert_events.c.status).order_by(alert_events.c.id)
        ).all()
    assert [tuple(r) for r in stored] == [("m0", "firing"), ("m0", "resolved")]


def test_a_delivery_larger_than_the_rate_limit_is_refused_and_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = add_source(env.store, env.team_id, "small", rate_limit="2/h")
    alerts = [firing(f"b{n}")["alerts"][0] for n in range(3)]
    refused = env.post({"alerts": alerts}, key=key)
    assert refused.status_code == 429
    assert "more than its rate limit 2/h ever lets through at once" in caplog.text
    # The refused delivery used up nothing: two events still fit.
    assert env.post({"alerts": alerts[:2]}, key=key).status_code == 202


def test_a_resent_group_of_stored_alerts_past_the_limit_is_accepted_without_a_warning(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = add_source(env.store, env.team_id, "small", rate_limit="2/s")
    alerts = [firing(f"b{n}")["alerts"][0] for n in range(3)]
    assert env.post({"alerts": alerts[:2]}, key=key).status_code == 202
    time.sleep(1.1)  # the bucket refills
    assert env.post({"alerts": alerts[2:]}, key=key).status_code == 202
    # All three again, more than the limit ever lets through at once, but all retries.
    again = env.post({"alerts": alerts}, key=key)
    assert again.status_code == 202 and again.json()["duplicates"] == 3, again.text
    assert "ever lets through" not in caplog.text


def test_a_delivery_within_the_rate_limit_does_not_look_its_events_up(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "roomy", rate_limit="100/s")
    reads: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "alert_events" in statement:
            reads.append(statement)

    sa.event.listen(env.store.engine, "before_cursor_execute", note)
    try:
        assert env.post(firing("r1"), key=key).status_code == 202
    finally:
        sa.event.remove(env.store.engine, "before_cursor_execute", note)
    assert reads == []


def test_a_key_rotation_waiting_for_the_write_lock_does_not_hold_up_deliveries(
    env: Env,
) -> None:
    # Another writer holds SQLite's write lock (under a flood, the group commit may keep
    # a rotation waiting); the rotation waits in a thread, not on the event loop that
    # answers every webhook.
    import threading

    headers = api_key(env.store, "platform")
    holding, release = threading.Event(), threading.Event()
    still_held = threading.Event()

    def writer() -> None:
        with env.store.begin():
            holding.set()
            still_held.set()
            release.wait(10)
            still_held.clear()

    answers: list[int] = []
    lock_holder = threading.Thread(target=writer, daemon=True)
    lock_holder.start()
    holding.wait(5)
    rotation = threading.Thread(
        target=lambda: answers.append(
            env.client.post(
                "/api/v1/alert-sources/tool/rotate-key", json={"grace": 60}, headers=headers
            ).status_code
        ),
        daemon=True,
    )
    rotation.start()
    try:
        _until_waiting(env.store)
        # A tool checking its webhook URL while the rotation waits.
        assert env.client.head(f"/api/v1/events/{env.key}").status_code == 204
        assert still_held.is_set() and answers == []
    finally:
        release.set()
    rotation.join(10)
    lock_holder.join(10)
    assert answers == [200]


def _until_waiting(store: Store) -> None:
    """Until a thread waits for the store's write lock."""
    lock = store._write_lock
    assert lock is not None
    wait_for(lambda: lock._cond._waiters, 5, "a writer waiting for the lock", poll=0.005)
