"""`beacon why` while a `for:` rule waits (issue 19, item 8): the service is still
operational, and the answer says which rule will act, and when."""

from __future__ import annotations

from cli.main import main
from tests.rules.helpers import event
from tests.rules.store_helpers import evaluate, ingest, load_rules, seed


def test_why_names_the_pending_rule_and_when_it_acts(settings, sqlite_store, monkeypatch, capsys):
    ids = seed(sqlite_store)
    runtime = load_rules(
        sqlite_store,
        """
  - id: api-down
    match: {source: am}
    services: [api]
    for: 1m
    then: [{set_status: major_outage}]
""",
    )
    ingest(sqlite_store, ids["am"], event(dedup_key="eu"))
    evaluate(sqlite_store, runtime)
    monkeypatch.setenv("BEACON_DATA_DIR", str(settings.data_dir))
    assert main(["why", "api", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "operational" and report["claims"] == []
    [pending] = report["pending"]
    assert pending["rule"] == "api-down" and pending["firing"] == ["eu"]
    assert pending["waits_for"] == "time" and pending["due_at"]
    assert main(["why", "api"]) == 0
    out = capsys.readouterr().out
    because = out.splitlines()[1]
    assert because.startswith("because no claims, open incidents or maintenance: operational")
    assert f"rule api-down is pending: it acts at {pending['due_at']}" in because
    assert "if its alert is still firing" in because
    assert "pending rule api-down since" in out and "firing: eu" in out


def test_why_says_a_window_rule_waits_for_more_alerts(settings, sqlite_store, monkeypatch, capsys):
    ids = seed(sqlite_store)
    runtime = load_rules(
        sqlite_store,
        """
  - id: api-flaky
    match: {source: am}
    services: [api]
    group_by: [labels.service]
    window: {count: 3, within: 5m}
    then: [{set_status: degraded}]
""",
    )
    ingest(sqlite_store, ids["am"], event(dedup_key="a1", labels={"service": "api"}))
    evaluate(sqlite_store, runtime)
    monkeypatch.setenv("BEACON_DATA_DIR", str(settings.data_dir))
    assert main(["why", "api"]) == 0
    out = capsys.readouterr().out
    assert "rule api-flaky is pending: it acts when enough alerts fire" in out
