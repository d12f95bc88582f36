"""The intake route: what each kind of delivery is answered, and what is stored."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

import pages.state
from engine.runtime import Runtime
from engine.settings import Settings
from engine.tables import alert_events, alert_sources, outbox, status_pages
from pages.app import create_app
from tests.intake.conftest import (
    Env,
    _env,
    add_source,
    add_team,
    firing,
    resolved,
)


def rows(env: Env) -> list[sa.Row]:
    with env.store.read() as conn:
        return list(conn.execute(sa.select(alert_events).order_by(alert_events.c.id)))


def evaluate_rows(env: Env) -> list[dict]:
    with env.store.read() as conn:
        return [
            r.payload for r in conn.execute(sa.select(outbox).where(outbox.c.kind == "evaluate"))
        ]


def test_it_stores_a_delivery_and_hands_it_to_evaluation(env: Env) -> None:
    r = env.post(firing("db-down", summary="Database down"))
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 1 and body["duplicates"] == 0
    [row] = rows(env)
    assert body["events"] == [str(row.id)]
    assert (row.dedup_key, row.status, row.summary) == ("db-down", "firing", "Database down")
    assert row.partition == f"source:{env.source_id}"
    assert row.evaluated_at is None and row.outcome is None
    assert row.raw["id"] == "db-down"
    assert evaluate_rows(env) == [{"partition": f"source:{env.source_id}"}]


def test_it_answers_unknown_and_disabled_keys_alike(env: Env) -> None:
    _, disabled_key = add_source(env.store, env.team_id, "off", enabled=False)
    unknown = env.post(firing(), key="no-such-key")
    disabled = env.post(firing(), key=disabled_key)
    assert unknown.status_code == disabled.status_code == 404
    assert unknown.json() == disabled.json()
    assert rows(env) == []


def test_it_reads_json_sent_as_text_plain_like_sns(env: Env) -> None:
    r = env.client.post(
        f"/api/v1/events/{env.key}",
        content=json.dumps(firing()),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
    )
    assert r.status_code == 202, r.text


def test_it_reads_a_body_without_content_type_like_healthchecks(env: Env) -> None:
    r = env.client.post(f"/api/v1/events/{env.key}", content=json.dumps(firing()).encode())
    assert r.status_code == 202, r.text


def test_it_reads_form_bodies(env: Env) -> None:
    r = env.client.post(f"/api/v1/events/{env.key}", data={"id": "web", "state": "down"})
    assert r.status_code == 202, r.text
    assert rows(env)[0].dedup_key == "web"


def test_it_reads_multipart_with_a_data_field_like_uptime_kuma(env: Env) -> None:
    r = env.client.post(
        f"/api/v1/events/{env.key}",
        files={"data": (None, json.dumps(firing("kuma-1")))},
    )
    assert r.status_code == 202, r.text
    assert rows(env)[0].dedup_key == "kuma-1"


def test_it_reads_a_query_string_on_get_like_uptimerobot(env: Env) -> None:
    r = env.client.get(f"/api/v1/events/{env.key}?id=robot-7&state=up")
    assert r.status_code == 202, r.text
    assert (rows(env)[0].dedup_key, rows(env)[0].status) == ("robot-7", "resolved")


def test_it_refuses_a_declared_content_type_it_cannot_read(env: Env) -> None:
    r = env.client.post(
        f"/api/v1/events/{env.key}",
        content=b"<alert/>",
        headers={"Content-Type": "application/xml"},
    )
    assert r.status_code == 415
    assert "application/xml" in r.json()["error"]["message"]


def test_it_says_what_was_wrong_with_an_unreadable_body(env: Env) -> None:
    r = env.post({"alerts": [{"id": "x", "state": "sideways"}]})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "state" in message and "fake-tool" in message and "sideways" in message


def test_it_says_which_format_was_expected_for_non_json(env: Env) -> None:
    r = env.client.post(
        f"/api/v1/events/{env.key}", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


@pytest.fixture
def small_env(settings: Settings, make_runtime: Callable[..., Runtime]) -> Iterator[Env]:
    yield from _env(make_runtime(settings.model_copy(update={"max_body_bytes": 200})))


def test_it_refuses_bodies_over_the_cap(small_env: Env) -> None:
    big = firing(summary="x" * 300)
    r = small_env.post(big)
    assert r.status_code == 413
    assert "200 bytes" in r.json()["error"]["message"]
    assert rows(small_env) == []


def test_it_refuses_streamed_bodies_over_the_cap(small_env: Env) -> None:
    def chunks() -> Iterator[bytes]:
        yield json.dumps(firing(summary="y" * 300)).encode()

    r = small_env.client.post(f"/api/v1/events/{small_env.key}", content=chunks())
    assert r.status_code == 413


def signed(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Fake-Signature": digest, "Content-Type": "application/json"}


def test_it_verifies_signatures_over_the_raw_bytes(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "signed", signing_secret="s3cret")
    # Whitespace the JSON parser ignores still changes the signature.
    body = b'{"alerts": [{"id": "s1", "state": "down"}]}  '
    good = env.client.post(f"/api/v1/events/{key}", content=body, headers=signed("s3cret", body))
    assert good.status_code == 202, good.text
    bad = env.client.post(
        f"/api/v1/events/{key}", content=body, headers=signed("s3cret", body.strip())
    )
    assert bad.status_code == 401
    assert "X-Fake-Signature" in bad.json()["error"]["message"]
    missing = env.client.post(f"/api/v1/events/{key}", content=body)
    assert missing.status_code == 401


def test_a_retried_delivery_has_no_second_effect(env: Env) -> None:
    first = env.post(firing("a1"))
    again = env.post(firing("a1"))
    assert again.status_code == 202
    assert again.json()["events"] == first.json()["events"]
    assert again.json()["duplicates"] == 1
    assert len(rows(env)) == 1
    assert len(evaluate_rows(env)) == 1


def test_the_tools_delivery_id_recognises_a_retry(env: Env) -> None:
    # No time of its own: the adapter stamps the receive time, so only the id can tell.
    body = {"delivery": "d-42", "alerts": [{"id": "p1", "state": "down"}]}
    first = env.post(body)
    again = env.post(body)
    assert again.json()["events"] == first.json()["events"]
    other = env.post({"delivery": "d-43", "alerts": [{"id": "p1", "state": "down"}]})
    assert other.json()["events"] != first.json()["events"]
    assert len(rows(env)) == 2


def test_a_new_state_of_the_same_alert_is_a_new_event(env: Env) -> None:
    env.post(firing("a1"))
    env.post(resolved("a1"))
    assert [r.status for r in rows(env)] == ["firing", "resolved"]


def test_test_deliveries_are_stored_as_evaluated_and_never_evaluated(env: Env) -> None:
    r = env.post(firing("ping", test=True))
    assert r.status_code == 202
    [row] = rows(env)
    assert row.test and row.evaluated_at is not None
    assert row.outcome["result"] == "test"
    assert evaluate_rows(env) == []


def test_it_records_when_the_source_last_sent_an_event(env: Env) -> None:
    env.post(firing())
    with env.store.read() as conn:
        last = conn.execute(
            sa.select(alert_sources.c.last_event_at).where(alert_sources.c.id == env.source_id)
        ).scalar_one()
    assert last is not None and last == rows(env)[0].received_at


def test_it_keeps_integration_keys_out_of_the_access_log(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="beacon.access"):
        env.post(firing())
        env.post(firing(), key="unknown-secret-key")
        env.client.post(f"/api/v1/events/{env.key}", content=b"{", headers={})
    text = caplog.text
    assert "/api/v1/events/<redacted>" in text
    assert env.key not in text and "unknown-secret-key" not in text


@pytest.mark.parametrize(
    "path",
    [
        "//api/v1/events/{key}",
        "/api/v1//events/{key}",
        "/api/v1/Events/{key}",
        "/api/v2/events/{key}",
        "/api/v1/./events/{key}",
        "/api/v1/event/{key}",
        "/p/api/v1/events/{key}",
        "/api/v1/events/{key}/extra",
    ],
)
def test_a_mistyped_intake_path_keeps_its_key_out_of_the_access_log(
    env: Env, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    # A tool template's slip still carries the real key, and its 404 is logged too.
    with caplog.at_level(logging.INFO, logger="beacon.access"):
        for method in ("POST", "GET", "HEAD"):
            env.client.request(method, path.format(key=env.key), content=b"{}")
    assert env.key not in caplog.text, caplog.text
    assert "<redacted>" in caplog.text


def test_a_status_pages_own_domain_takes_no_deliveries(env: Env) -> None:
    # On a page's custom domain only that page's paths exist: the intake is not one of them,
    # on the fast path or through the app.
    with env.store.begin() as conn:
        conn.execute(
            status_pages.insert().values(
                team_id=env.team_id,
                slug="acme",
                name="Acme",
                custom_domain="status.acme.test",
                domain_verified_at=datetime.now(UTC),
            )
        )
    r = env.post(firing(), headers={"Host": "status.acme.test"})
    assert r.status_code == 404
    assert rows(env) == []
    assert env.post(firing()).status_code == 202


def test_other_methods_get_405_not_a_delivery(env: Env) -> None:
    r = env.client.delete(f"/api/v1/events/{env.key}")
    assert r.status_code == 405
    assert rows(env) == []


def test_a_multi_alert_delivery_answers_every_id(env: Env) -> None:
    body = {
        "alerts": [
            {"id": "m1", "state": "down", "at": "2026-11-29T10:00:00Z"},
            {"id": "m2", "state": "up", "at": "2026-11-29T10:00:00Z"},
        ]
    }
    r = env.post(body)
    assert r.json()["accepted"] == 2
    assert r.json()["events"] == [str(row.id) for row in rows(env)]


def test_it_stores_and_deduplicates_on_postgresql(pg_env: Env) -> None:
    first = pg_env.post(firing("pg"))
    again = pg_env.post(firing("pg"))
    assert first.status_code == again.status_code == 202
    assert first.json()["events"] == again.json()["events"]
    assert len(rows(pg_env)) == 1
    assert evaluate_rows(pg_env) == [{"partition": f"source:{pg_env.source_id}"}]


def test_the_app_answers_a_source_with_no_adapter_without_a_500(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "odd", type="no-such-tool")
    r = env.post(firing(), key=key)
    assert r.status_code == 501
    assert "no-such-tool" in r.json()["error"]["message"]


def test_a_second_app_on_the_same_store_sees_the_events(
    env: Env, settings: Settings, make_runtime: Callable[..., Runtime]
) -> None:
    rt = make_runtime(settings)
    with TestClient(create_app(rt)) as other:
        r = other.post(f"/api/v1/events/{env.key}", json=firing("x2"))
        assert r.status_code == 202
    assert [r.dedup_key for r in rows(env)] == ["x2"]


def test_one_waiting_evaluate_row_serves_every_delivery_until_it_is_claimed(env: Env) -> None:
    env.post(firing("w1"))
    env.post(firing("w2"))
    assert len(evaluate_rows(env)) == 1
    # Once a dispatcher has claimed it, its handler may already be running: a new row.
    from engine import outbox as outbox_mod

    outbox_mod.claim(env.store, "test-dispatcher")
    env.post(firing("w3"))
    assert len(evaluate_rows(env)) == 2


def test_one_waiting_evaluate_row_serves_every_delivery_on_postgresql(pg_env: Env) -> None:
    pg_env.post(firing("w1"))
    pg_env.post(firing("w2"))
    assert len(evaluate_rows(pg_env)) == 1


def test_it_answers_503_and_stores_nothing_while_the_store_cannot_write(env: Env) -> None:
    with env.store.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE alert_events RENAME TO alert_events_away")
    r = env.post(firing("s1"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "nothing was stored" in r.json()["error"]["message"]
    with env.store.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE alert_events_away RENAME TO alert_events")
    assert env.post(firing("s1")).status_code == 202
    assert len(rows(env)) == 1


def test_it_answers_503_while_the_store_cannot_look_up_the_key(env: Env) -> None:
    with env.store.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE alert_sources RENAME TO alert_sources_away")
    r = env.post(firing("s1"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
    assert "nothing was stored" in r.json()["error"]["message"]
    with env.store.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE alert_sources_away RENAME TO alert_sources")
    # The failure was not cached as "no such key".
    assert env.post(firing("s1")).status_code == 202
    assert len(rows(env)) == 1


def test_postgresql_takes_the_configured_group_commits_in_flight_and_sqlite_one(
    pg_url: str, tmp_path: Path, make_runtime: Callable[..., Runtime]
) -> None:
    for name, extra, expected in (
        ("pg", {"BEACON_DATABASE_URL": pg_url}, 3),
        ("lite", {}, 1),
    ):
        settings = Settings.from_env(
            {"BEACON_DATA_DIR": str(tmp_path / name), "BEACON_INTAKE_WRITERS": "3", **extra}
        )
        rt = make_runtime(settings)
        team = add_team(rt.store, "t")
        _, key = add_source(rt.store, team)
        with TestClient(create_app(rt)) as client:
            assert client.post(f"/api/v1/events/{key}", json=firing()).status_code == 202
            writer = pages.state.of(rt).event_writer
            assert writer is not None and writer.writers == expected


def test_a_client_that_hangs_up_mid_body_is_not_an_error(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    # A tool timing out (or a load test ending) leaves requests whose bodies never come:
    # nothing is stored, and operators see no error with a traceback for it.
    import asyncio

    host = env.client.base_url.host
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/v1/events/{env.key}",
        "raw_path": f"/api/v1/events/{env.key}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host.encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    messages = [{"type": "http.request", "body": b'{"alerts": [', "more_body": True}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(env.client.app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert rows(env) == []


def test_it_answers_503_on_postgresql_too_when_the_store_cannot_write(pg_env: Env) -> None:
    # The PostgreSQL insert goes through the driver: its errors must still be the 503 that
    # tells the tool nothing was stored, never a 500.
    test_it_answers_503_and_stores_nothing_while_the_store_cannot_write(pg_env)


def test_a_stray_nul_character_costs_no_alert(env: Env) -> None:
    # PostgreSQL's text and jsonb cannot hold NUL; the alert is stored (on both databases
    # alike) with U+FFFD in its place rather than refused over and over.
    r = env.post(firing("n\x00ul", summary="disk\x00full", extra={"k\x00": ["a\x00b"]}))
    assert r.status_code == 202, r.text
    [row] = rows(env)
    assert row.dedup_key == "n\ufffdul" and row.summary == "disk\ufffdfull"
    assert row.raw["extra"] == {"k\ufffd": ["a\ufffdb"]}


def test_a_stray_nul_character_costs_no_alert_on_postgresql(pg_env: Env) -> None:
    test_a_stray_nul_character_costs_no_alert(pg_env)


def test_a_key_with_a_nul_character_is_unknown_not_an_error(pg_env: Env, env: Env) -> None:
    for each in (pg_env, env):
        r = each.client.post("/api/v1/events/abc%00def", json=firing())
        assert r.status_code == 404


def test_ipv6_hosts_are_beacons_own_with_or_without_a_port(tmp_path: Path) -> None:
    from pages.hosts import own_hosts, request_host

    settings = Settings.from_env(
        {"BEACON_DATA_DIR": str(tmp_path), "BEACON_BASE_URL": "http://[2001:db8::1]:8000"}
    )
    own = own_hosts(settings)
    for header, expected in (
        (b"[::1]:8000", "[::1]"),
        (b"[2001:DB8::1]", "[2001:db8::1]"),
        (b"Example.COM:443", "example.com"),
    ):
        host = request_host({"headers": [(b"host", header)]})
        assert host == expected
    assert {"[::1]", "[2001:db8::1]"} <= own


def test_head_tells_whether_the_url_takes_deliveries_and_stores_nothing(env: Env) -> None:
    url = f"/api/v1/events/{env.key}?id=h1&state=down&at=2026-11-29T10:00:00Z"
    assert env.client.head(url).status_code == 204
    assert env.client.head("/api/v1/events/no-such-key?id=h1").status_code == 404
    assert rows(env) == []
