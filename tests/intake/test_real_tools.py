"""Real tools' fixtures through the intake: signatures over the raw bytes, delivery ids,
transports as the tools send them."""

from __future__ import annotations

import hashlib
import hmac

import sqlalchemy as sa

from engine.tables import alert_events
from tests.conftest import FIXTURES
from tests.intake.conftest import Env, add_source

PAGERDUTY = FIXTURES / "alert_sources/pagerduty"
KUMA = FIXTURES / "alert_sources/uptime-kuma"


def rows(env: Env) -> list[sa.Row]:
    with env.store.read() as conn:
        return list(conn.execute(sa.select(alert_events).order_by(alert_events.c.id)))


def pagerduty_headers(secret: str, body: bytes, webhook_id: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-PagerDuty-Signature": f"v1=deadbeef,v1={digest}",
        "X-Webhook-Id": webhook_id,
    }


def test_a_signed_pagerduty_retry_is_recognised_by_its_event_id(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "pd", type="pagerduty", signing_secret="pd-secret")
    body = (PAGERDUTY / "incident_triggered_v3.json").read_bytes()
    url = f"/api/v1/events/{key}"
    first = env.client.post(url, content=body, headers=pagerduty_headers("pd-secret", body, "w-1"))
    retry = env.client.post(url, content=body, headers=pagerduty_headers("pd-secret", body, "w-1"))
    assert first.status_code == retry.status_code == 202, first.text
    assert retry.json()["events"] == first.json()["events"]
    assert retry.json()["duplicates"] == 1
    # A captured delivery replayed under a new X-Webhook-Id (not signed): still the retry.
    replayed = env.client.post(
        url, content=body, headers=pagerduty_headers("pd-secret", body, "w-replayed")
    )
    assert replayed.status_code == 202 and replayed.json()["duplicates"] == 1, replayed.text
    forged = env.client.post(url, content=body, headers=pagerduty_headers("wrong", body, "w-2"))
    assert forged.status_code == 401
    assert "X-PagerDuty-Signature" in forged.json()["error"]["message"]
    assert len(rows(env)) == 1


def test_uptime_kumas_form_data_preset_is_read_from_its_data_field(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "kuma", type="uptime-kuma")
    data = (KUMA / "down_v1_23.json").read_text()
    r = env.client.post(f"/api/v1/events/{key}", files={"data": (None, data)})
    assert r.status_code == 202, r.text
    [row] = rows(env)
    assert row.status == "firing"


def test_uptime_kuma_2_get_with_a_query_string(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "kuma", type="uptime-kuma")
    # The fixture is the captured request: "GET /your/webhook?msg=...&heartbeat=... HTTP/1.1".
    request_line = (KUMA / "get_method_down_v2_1plus.txt").read_text().splitlines()[0]
    target = request_line.split(" ")[1]
    r = env.client.get(f"/api/v1/events/{key}{target[target.index('?') :]}")
    assert r.status_code == 202, r.text
    assert rows(env)[0].status == "firing"


def test_a_healthchecks_json_body_labelled_urlencoded_is_read_as_json(env: Env) -> None:
    # curl --data-binary and most HTTP libraries label a string body urlencoded.
    _, key = add_source(env.store, env.team_id, "hc", type="healthchecks")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = (FIXTURES / "alert_sources/healthchecks/down_rendered_now_check_json.json").read_bytes()
    r = env.client.post(f"/api/v1/events/{key}", content=body, headers=form)
    assert r.status_code == 202, r.text
    template = (
        FIXTURES / "alert_sources/healthchecks/template_docs_now_check_json.txt"
    ).read_bytes()
    r = env.client.post(f"/api/v1/events/{key}", content=template, headers=form)
    assert r.status_code == 400
    assert "'$JSON' at character 25 is an unrendered template placeholder" in r.text


GENERIC = {"status": "state == 'DOWN' && 'firing' || 'resolved'", "dedup_key": "id"}


def test_a_generic_source_maps_a_form_post_as_its_fields(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "gen", type="generic", settings=GENERIC)
    url = f"/api/v1/events/{key}"
    urlencoded = env.client.post(url, data={"id": "f1", "state": "DOWN"})
    multipart = env.client.post(url, files={"id": (None, "f2"), "state": (None, "DOWN")})
    labelled = env.client.post(
        url,
        content=b'{"id": "f3", "state": "UP"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    for answer in (urlencoded, multipart, labelled):
        assert answer.status_code == 202, answer.text
    assert [(r.dedup_key, r.status) for r in rows(env)] == [
        ("f1", "firing"),
        ("f2", "firing"),
        ("f3", "resolved"),
    ]
