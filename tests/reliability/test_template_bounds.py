"""Incident templates render with output, time and memory limits in a child process
(`engine.sandbox`): a template bomb is an error recorded against its rule, as a render error
is, and the worker and every other team's events carry on meanwhile."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa

from engine import sandbox
from engine.errors import ConfigError
from engine.sandbox import Limits, TemplateError
from engine.settings import Settings
from engine.tables import (
    alert_sources,
    incident_templates,
    incidents,
    rule_errors,
    services,
    teams,
)
from tests.rules.helpers import event
from tests.rules.store_helpers import evaluate, ingest, load_rules, seed, status_of
from workers.evaluate import handle_evaluate

NESTED_LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"

BOMBS = {
    "{{ 'x' * 30000000 }}": "'*' would make 30,000,000 items",
    "{{ ['x'] * 30000000 }}": "'*' would make 30,000,000 items",
    "{% for a in range(100000) %}xxxxxxxxxx{% endfor %}": "output is longer than the limit",
    NESTED_LOOPS: "took longer than the limit of 0.5 s",
    "{{ 'x'|center(300000000) }}": "memory|took longer|stopped",  # one C call: a limit stops it
    "{{ 2 ** 100000 }}": "too large a number",
    "{{ event.nope.deeper }}": "has no attribute 'nope'",
}


@pytest.mark.parametrize("text", list(BOMBS))
def test_a_template_bomb_is_refused_with_what_it_broke(text: str):
    with pytest.raises(TemplateError, match=BOMBS[text]):
        sandbox.render(text, {"event": {"summary": "x"}}, Limits(seconds=0.5))
    # The renderer is there for the next template, bomb or not.
    assert sandbox.render("{{ event.summary }}!", {"event": {"summary": "ok"}}) == "ok!"


def test_templates_within_the_limits_render_as_jinja_does():
    context = {"event": {"labels": {"app.kubernetes.io/name": "api"}}, "services": []}
    assert sandbox.render("{{ event.labels['app.kubernetes.io/name'] }}", context) == "api"
    assert sandbox.render("Recovered.\n", {}) == "Recovered."
    assert sandbox.render("{{ 'ab' * 3 }}", {}) == "ababab"


def _second_team(store) -> dict[str, int]:
    """Team `acme` with its own service, source `bm` and a template that renders fine."""
    with store.begin() as conn:
        team = conn.execute(teams.insert().values(key="acme", name="Acme")).inserted_primary_key[0]
        web = conn.execute(
            services.insert().values(team_id=team, key="web", name="Web")
        ).inserted_primary_key[0]
        source = conn.execute(
            alert_sources.insert().values(
                team_id=team, key="bm", name="bm", type="alertmanager", key_digest="bm-k"
            )
        ).inserted_primary_key[0]
        conn.execute(
            incident_templates.insert().values(
                team_id=team, key="outage", title="{{ service.name }} down", message="Looking."
            )
        )
    return {"web": web, "bm": source}


RULES = """
  - id: bomb-rule
    match: {source: am}
    services: [api]
    then:
      - set_status: major_outage
      - open_incident: {template: bomb}
  - id: acme-rule
    match: {source: bm}
    services: [web]
    then:
      - set_status: partial_outage
      - open_incident: {template: outage}
"""


def _bomb_template(store, team_id: int, text: str) -> None:
    with store.begin() as conn:
        conn.execute(incident_templates.insert().values(team_id=team_id, key="bomb", title=text))


def _errors(store) -> list[tuple[str, str]]:
    with store.read() as conn:
        return [
            tuple(r) for r in conn.execute(sa.select(rule_errors.c.rule_id, rule_errors.c.message))
        ]


def _titles(store) -> list[str]:
    with store.read() as conn:
        return list(conn.execute(sa.select(incidents.c.title)).scalars())


@pytest.mark.parametrize("text", ["{{ 'x' * 30000000 }}", NESTED_LOOPS])
def test_a_bomb_is_a_rule_error_and_the_other_teams_incident_opens(store, text: str):
    ids = seed(store)
    other = _second_team(store)
    _bomb_template(store, ids["team"], text)
    runtime = load_rules(store, RULES)
    ingest(store, ids["am"], event(summary="boom"))
    ingest(store, other["bm"], event(source="bm", dedup_key="w", summary="down"), partition="bm")
    evaluate(store, runtime, "am")
    evaluate(store, runtime, "bm")
    [(rule, message)] = _errors(store)
    assert rule == "bomb-rule"
    assert "template 'bomb' failed to render" in message
    assert "limit" in message, message
    assert len(message) < 1000
    # The claim holds without the incident; the other team's incident opened.
    assert status_of(store, ids["api"]) == "major_outage"
    assert status_of(store, other["web"]) == "partial_outage"
    assert _titles(store) == ["Web down"]


@pytest.mark.postgres
def test_another_teams_events_are_evaluated_while_a_bomb_renders(pg_store):
    # On PostgreSQL partitions are evaluated concurrently: while one team's template runs
    # to its time limit, the other team's alert opens its incident.
    store = pg_store
    ids = seed(store)
    other = _second_team(store)
    _bomb_template(store, ids["team"], NESTED_LOOPS)
    runtime = load_rules(store, RULES)
    ingest(store, ids["am"], event(summary="boom"))
    ingest(store, other["bm"], event(source="bm", dedup_key="w", summary="down"), partition="bm")
    bomb = threading.Thread(target=evaluate, args=(store, runtime, "am"))
    bomb.start()
    try:
        evaluate(store, runtime, "bm")
        assert _titles(store) == ["Web down"]
        assert bomb.is_alive(), "the bomb should still be rendering"
    finally:
        bomb.join()
    [(rule, message)] = _errors(store)
    assert rule == "bomb-rule" and "took longer than the limit" in message


def test_the_output_limit_counts_bytes_and_the_settings_set_both_limits(tmp_path):
    settings = Settings.from_env(
        {
            "BEACON_DATA_DIR": str(tmp_path),
            "BEACON_TEMPLATE_MAX_OUTPUT_BYTES": "100",
            "BEACON_TEMPLATE_RENDER_SECONDS": "0.5",
        }
    )
    limits = settings.template_limits
    assert limits == Limits(output_bytes=100, seconds=0.5)
    assert sandbox.render("{{ 'é' * 50 }}", {}, limits) == "é" * 50  # 100 bytes
    # 51 characters, 102 bytes: over, rendered or plain.
    for text in ("{{ 'é' * 51 }}", "é" * 51):
        with pytest.raises(TemplateError, match="limit of 100 bytes"):
            sandbox.render(text, {}, limits)
    with pytest.raises(TemplateError, match="took longer than the limit of 0.5 s"):
        sandbox.render(NESTED_LOOPS, {}, limits)
    assert Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)}).template_limits == Limits(
        65536, 2.0
    )


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("BEACON_TEMPLATE_MAX_OUTPUT_BYTES", "0", "must be from 1 to 16777216"),
        ("BEACON_TEMPLATE_MAX_OUTPUT_BYTES", "1e9", "must be a whole number"),
        ("BEACON_TEMPLATE_MAX_OUTPUT_BYTES", "99999999999", "must be from 1 to 16777216"),
        ("BEACON_TEMPLATE_RENDER_SECONDS", "0", "must be more than 0 and at most 60 seconds"),
        ("BEACON_TEMPLATE_RENDER_SECONDS", "soon", "must be a number of seconds"),
        ("BEACON_DELIVERY_RETENTION_DAYS", "-1", "must be 0 (keep for ever) or more days"),
    ],
)
def test_a_bad_limit_setting_is_a_config_error_naming_it(tmp_path, name, value, error):
    with pytest.raises(ConfigError, match=re.escape(f"{name} {error}")):
        Settings.from_env({"BEACON_DATA_DIR": str(tmp_path), name: value})


def test_the_workers_render_with_the_limits_of_their_settings(tmp_path, store, make_runtime):
    settings = Settings.from_env(
        {"BEACON_DATA_DIR": str(tmp_path), "BEACON_TEMPLATE_MAX_OUTPUT_BYTES": "20"}
    )
    rt = make_runtime(settings, store=store)
    ids = seed(store)
    _bomb_template(store, ids["team"], "{{ event.summary }} is down")
    load_rules(store, RULES)
    ingest(store, ids["am"], event(summary="a summary of twenty bytes or more"))
    handle_evaluate(rt, [{"partition": "am"}])
    [(rule, message)] = _errors(store)
    assert rule == "bomb-rule" and "longer than the limit of 20 bytes" in message
