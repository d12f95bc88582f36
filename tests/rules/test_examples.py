"""The example config's rules (examples/rules/*.yaml) pass `beacon rules check`."""

from __future__ import annotations

from cli.main import main
from tests.conftest import ROOT

# The keys of examples/beacon.yaml (Northwind), used until that file is in this tree.
NORTHWIND = """
teams: [{key: platform}]
services:
  - {key: website, name: Website}
  - {key: app, name: Web App}
  - {key: api, name: Public API}
  - {key: auth, name: Sign-in}
  - {key: db, name: Database}
  - {key: search, name: Search}
  - {key: email, name: Email Delivery}
  - {key: webhooks, name: Outbound Webhooks}
alert_sources:
  - {key: uptime-kuma, type: uptime-kuma}
  - {key: alertmanager, type: alertmanager}
channels: [{key: platform-slack, type: slack}]
incident_templates:
  - {key: api-outage, title: "Public API unavailable"}
  - {key: db-degraded, title: "Database performance degraded"}
"""


def test_the_example_rules_pass_rules_check(tmp_path, capsys):
    config = ROOT / "examples" / "beacon.yaml"
    if not config.is_file():
        config = tmp_path / "beacon.yaml"
        config.write_text(NORTHWIND)
    files = sorted(str(p) for p in (ROOT / "examples" / "rules").glob("*.yaml"))
    assert files
    code = main(["rules", "check", *files, "--config", str(config)])
    assert code == 0, capsys.readouterr().out
