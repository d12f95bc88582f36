"""`beacon rules test` with raw tool payloads, parsed by the real adapters as the intake
would: fixtures from `../shared/fixtures/alert_sources/`, copied as they are into
`tests/rules/fixtures/`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli.main import main

PAYLOADS = Path(__file__).parent / "fixtures"
CONFIG = """
teams: [{key: platform}]
services:
  - {key: api, name: Public API, team: platform}
  - {key: db, name: Database, team: platform}
alert_sources:
  - {key: kuma, name: Uptime Kuma, type: uptime-kuma, team: platform}
  - {key: am, name: Alertmanager, type: alertmanager, team: platform}
"""
RULES = """version: 1
rules:
  - id: kuma-test-monitor
    match: {source_type: uptime-kuma, labels.monitor_name: test}
    services: [api]
    then: [{set_status: major_outage}]
  - id: am-fire
    match: {source: am, labels.alertname: Fire, severity: critical}
    services: [db]
    then: [{set_status: partial_outage}]
"""


def _files(tmp_path):
    (tmp_path / "beacon.yaml").write_text(CONFIG)
    (tmp_path / "rules.yaml").write_text(RULES)
    for payload in PAYLOADS.glob("*.json"):
        shutil.copy(payload, tmp_path / payload.name)


def _rules_test(tmp_path, events, *options):
    """`beacon rules test` on the files `_files` wrote, with the events in `events`."""
    return main(
        [
            "rules",
            "test",
            str(tmp_path / "rules.yaml"),
            "--events",
            str(tmp_path / events),
            *options,
            "--config",
            str(tmp_path / "beacon.yaml"),
        ]
    )


def test_a_raw_payload_file_goes_through_its_sources_adapter(tmp_path, capsys):
    _files(tmp_path)
    code = _rules_test(tmp_path, "down_v1_23.json", "--source", "kuma")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [(x["intent"], x["rule"], x["service"]) for x in lines] == [
        ("claim", "kuma-test-monitor", "api")
    ]
    assert lines[0]["group"] == "kuma/monitor:89"


def test_a_raw_payload_shows_what_a_for_rule_does_once_its_time_has_passed(tmp_path, capsys):
    # A payload file has no `until`: the clock runs on while anything is due.
    _files(tmp_path)
    rules = RULES.replace("    services: [api]\n", "    services: [api]\n    for: 1m\n", 1)
    (tmp_path / "rules.yaml").write_text(rules)
    code = _rules_test(tmp_path, "down_v1_23.json", "--source", "kuma")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    # The clock starts when the tool says the monitor went down (the heartbeat's "time",
    # 2023-07-31 18:56:15.374 UTC), not at a fixed date (issue 19).
    assert [(x["at"], x["intent"], x["service"]) for x in lines] == [
        ("2023-07-31T18:57:15.374000Z", "claim", "api")
    ]


def test_a_scenario_without_until_stops_its_clock_at_the_last_event(tmp_path, capsys):
    # Scenarios say how long to run (`until`); their expectations must not change under them.
    _files(tmp_path)
    rules = RULES.replace("    services: [api]\n", "    services: [api]\n    for: 1m\n", 1)
    (tmp_path / "rules.yaml").write_text(rules)
    (tmp_path / "scenario.yaml").write_text(
        "events:\n  - {at: 0s, source: kuma, payload: down_v1_23.json}\nexpect: []\n"
    )
    assert _rules_test(tmp_path, "scenario.yaml") == 0
    assert capsys.readouterr().out == ""


def test_a_scenario_mixes_payloads_over_time_and_checks_expectations(tmp_path, capsys):
    _files(tmp_path)
    (tmp_path / "scenario.yaml").write_text(
        """
events:
  - {at: 0s, source: kuma, payload: down_v1_23.json}
  - {at: 30s, source: am, payload: firing_single.json}
  - {at: 2m, source: kuma, payload: up_v1_23.json}
  - {at: 3m, source: am, payload: resolved_single.json}
expect:
  - {at: "2026-01-01T00:00:00Z", intent: claim, service: api, status: major_outage}
  - {at: "2026-01-01T00:00:30Z", intent: claim, service: db, status: partial_outage}
  - {at: "2026-01-01T00:02:00Z", intent: release, service: api}
  - {at: "2026-01-01T00:03:00Z", intent: release, service: db}
"""
    )
    code = _rules_test(tmp_path, "scenario.yaml")
    captured = capsys.readouterr()
    assert code == 0, captured.err


def test_an_unreadable_scenario_exits_2_and_says_where(tmp_path, capsys):
    _files(tmp_path)
    (tmp_path / "scenario.yaml").write_text("events:\n  - {at: soon, source: kuma, event: {}}\n")
    code = _rules_test(tmp_path, "scenario.yaml")
    assert code == 2
    assert "scenario.yaml: event 1: at 'soon' is neither a duration" in capsys.readouterr().err


def test_an_events_file_that_cannot_be_read_is_named_with_the_reason(tmp_path, capsys):
    # Once a traceback (a missing scenario), or "needs --source" for a missing payload.
    _files(tmp_path)
    (tmp_path / "a-directory.json").mkdir()
    for name, reason in (
        ("missing.yaml", "No such file or directory"),
        ("missing.json", "No such file or directory"),
        ("a-directory.json", "Is a directory"),
    ):
        assert _rules_test(tmp_path, name) != 0
        assert f"{tmp_path / name}: cannot read: {reason}" in capsys.readouterr().err


def test_a_payload_no_rule_matches_says_why_and_exits_1(tmp_path, capsys):
    # Silence read as "fine" (issue 19): each rule's first miss, as `events tail` says it.
    _files(tmp_path)
    payload = json.loads((tmp_path / "down_v1_23.json").read_text())
    payload["monitor"]["name"] = "Billing"
    (tmp_path / "billing.json").write_text(json.dumps(payload))
    code = _rules_test(tmp_path, "billing.json", "--source", "kuma")
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert "e1 (kuma, monitor:89, received 2023-07-31T18:56:15.374000Z): no rule matched" in err
    assert "kuma-test-monitor (" in err
    assert 'labels.monitor_name is "Billing", the rule wants "test"' in err
    assert "nothing would happen: no rule acted on its 1 event(s)" in err


def test_a_scenario_that_expects_nothing_passes_and_still_explains_the_no_match(tmp_path, capsys):
    _files(tmp_path)
    (tmp_path / "quiet.yaml").write_text(
        "events:\n"
        "  - {at: 0s, source: kuma, event: {status: firing, labels: {monitor_name: other}}}\n"
        "expect: []\n"
    )
    code = _rules_test(tmp_path, "quiet.yaml")
    err = capsys.readouterr().err
    assert code == 0
    assert "no rule matched" in err and "nothing would happen" not in err
