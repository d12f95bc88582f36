"""`GET /api/v1/services/{key}/why`, `beacon why` and `beacon rules check` against the store."""

from __future__ import annotations

from starlette.testclient import TestClient

from cli.main import main
from engine.accounts import create_api_key
from engine.tables import teams
from pages.app import create_app
from tests.rules.helpers import event
from tests.rules.store_helpers import evaluate, ingest, load_rules, seed


def test_why_explains_a_rule_claim_to_its_team_and_hides_it_from_others(
    settings, sqlite_store, make_runtime
):
    ids = seed(sqlite_store)
    with sqlite_store.begin() as conn:
        conn.execute(teams.insert().values(key="other"))
        # Private: a team that is not private is readable by every responder (engine.authz).
        conn.execute(teams.update().values(private=True))
    runtime = load_rules(
        sqlite_store,
        """
  - id: api-5xx
    match: {source: am}
    services: [api]
    then: [{set_status: partial_outage}]
""",
    )
    ingest(sqlite_store, ids["am"], event(dedup_key="eu"))
    evaluate(sqlite_store, runtime)
    own = create_api_key(sqlite_store, name="ops", team="platform")
    other = create_api_key(sqlite_store, name="them", team="other")
    rt = make_runtime(settings, store=sqlite_store)
    with TestClient(create_app(rt)) as client:
        answer = client.get("/api/v1/services/api/why", headers={"Authorization": f"Bearer {own}"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "partial_outage"
        assert body["because"] == "partial_outage: the worst of rule api-5xx claims partial_outage"
        assert body["claims"][0]["alerts"] == [{"source": "am", "dedup_key": "eu", "firing": True}]
        hidden = client.get(
            "/api/v1/services/api/why", headers={"Authorization": f"Bearer {other}"}
        )
        assert hidden.status_code == 404
        assert client.get("/api/v1/services/api/why").status_code == 401


def test_beacon_why_prints_the_explanation(settings, sqlite_store, monkeypatch, capsys):
    ids = seed(sqlite_store)
    runtime = load_rules(
        sqlite_store,
        """
  - id: api-5xx
    match: {source: am}
    services: [api]
    then: [{set_status: partial_outage}]
""",
    )
    ingest(sqlite_store, ids["am"], event(dedup_key="eu"))
    evaluate(sqlite_store, runtime)
    monkeypatch.setenv("BEACON_DATA_DIR", str(settings.data_dir))
    assert main(["why", "api"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        out.splitlines()[0],
        "because partial_outage: the worst of rule api-5xx claims partial_outage",
    ]
    assert "claim partial_outage by rule api-5xx" in out and "firing: eu" in out
    assert main(["why", "nope"]) == 2
    assert "no service 'nope'" in capsys.readouterr().err


def test_rules_check_without_config_checks_references_against_the_store(
    settings, sqlite_store, monkeypatch, tmp_path, capsys
):
    seed(sqlite_store)
    monkeypatch.setenv("BEACON_DATA_DIR", str(settings.data_dir))
    good = tmp_path / "good.yaml"
    good.write_text(
        "version: 1\nrules:\n  - id: a\n    match: {source: am}\n    services: [api]\n"
        "    then: [{open_incident: {template: outage}}]\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("[api]", "[nope]"))
    assert main(["rules", "check", str(good)]) == 0
    assert main(["rules", "check", str(bad)]) == 1
    assert f"{bad}:3:5: rule 'a': unknown service 'nope'" in capsys.readouterr().out
