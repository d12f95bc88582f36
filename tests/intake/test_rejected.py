"""Refused deliveries are found again (issue 19, item 9): per source, status and reason,
the last 100, in the sources API and `beacon events tail`; a body that another tool's
adapter reads is named as that tool's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cli.main import main
from engine import rejections
from engine.tables import alert_sources, rejected_deliveries
from tests.conftest import FIXTURES

from .conftest import Env, add_source, api_key, firing

GRAFANA = FIXTURES / "alert_sources" / "grafana" / "firing_grouped_docs_example.json"


def _rejected(env: Env, key: str = "tool", **params: str) -> list[dict[str, object]]:
    answer = env.client.get(
        f"/api/v1/alert-sources/{key}/rejected",
        headers=api_key(env.store, "platform"),
        params=params,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["rejected"]  # type: ignore[no-any-return]


def test_a_bad_body_is_refused_and_recorded_with_its_reason(env: Env) -> None:
    answer = env.post(content=b"{not json", headers={"User-Agent": "SomeTool/1.0"})
    assert answer.status_code == 400
    [refused] = _rejected(env)
    assert refused["status"] == 400
    assert refused["reason"] == answer.json()["error"]["message"]
    assert refused["user_agent"] == "SomeTool/1.0" and refused["bytes"] == 9
    assert refused["method"] == "POST"
    # Accepted deliveries leave no refusal.
    assert env.post(firing()).status_code == 202
    assert len(_rejected(env)) == 1


def test_a_disabled_sources_key_is_a_404_recorded_for_that_source(env: Env) -> None:
    with env.store.begin() as conn:
        conn.execute(alert_sources.update().values(enabled=False))
    assert env.post(firing()).status_code == 404
    [refused] = _rejected(env)
    assert refused["status"] == 404 and "the alert source is disabled" in str(refused["reason"])


def test_a_key_that_names_no_source_is_kept_for_admins_with_its_first_characters_only(
    env: Env,
) -> None:
    wrong = "wrongkey-0123456789abcdef"
    assert env.post(firing(), key=wrong).status_code == 404
    assert _rejected(env) == []
    as_team = env.client.get("/api/v1/rejected-deliveries", headers=api_key(env.store, "platform"))
    assert as_team.status_code == 403
    admin = env.client.get("/api/v1/rejected-deliveries", headers=api_key(env.store, admin=True))
    [refused] = admin.json()["rejected"]
    assert refused["status"] == 404 and refused["key_starts_with"] == "wron"
    assert wrong not in admin.text


def test_only_the_last_100_refusals_of_a_source_are_kept(env: Env) -> None:
    with env.store.begin() as conn:
        for n in range(rejections.KEEP + 20):
            rejections.record(
                conn,
                env.source_id,
                rejections.Refusal(
                    at=datetime(2026, 12, 7, tzinfo=UTC) + timedelta(seconds=n),
                    status=400,
                    reason=f"refusal {n}",
                    method="POST",
                    content_type=None,
                    bytes=0,
                    user_agent=None,
                    client=None,
                ),
            )
        kept = conn.execute(
            sa.select(sa.func.count()).where(rejected_deliveries.c.source_id == env.source_id)
        ).scalar()
    assert kept == rejections.KEEP
    shown = _rejected(env)
    assert shown[0]["reason"] == f"refusal {rejections.KEEP + 19}"
    assert shown[-1]["reason"] == "refusal 20"


def test_a_grafana_body_sent_to_an_uptime_kuma_source_is_named_as_grafanas(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "kuma", type="uptime-kuma")
    answer = env.client.post(
        f"/api/v1/events/{key}",
        content=GRAFANA.read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert message.startswith("not a valid uptime-kuma delivery")
    assert "looks like a Grafana delivery" in message
    assert "Uptime Kuma source" in message
    [refused] = _rejected(env, "kuma")
    assert "looks like a Grafana delivery" in str(refused["reason"])


def test_a_body_no_other_tool_reads_names_none(env: Env) -> None:
    _, key = add_source(env.store, env.team_id, "kuma", type="uptime-kuma")
    answer = env.client.post(f"/api/v1/events/{key}", json={"hello": "world"})
    assert answer.status_code == 400
    assert "looks like" not in answer.json()["error"]["message"]


def test_events_tail_shows_refusals_beside_the_events(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert env.post(firing()).status_code == 202
    assert env.post(content=b"{not json").status_code == 400
    monkeypatch.setenv("BEACON_DATA_DIR", str(env.runtime.settings.data_dir))
    assert main(["events", "tail", "tool", "--no-follow"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert "firing" in out[0]
    assert "REFUSED 400 POST" in out[1] and "9 bytes" in out[1]
