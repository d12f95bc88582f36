"""Config errors from every stage come in one report, each at its file and line, with "did
you mean" where a near name exists (issue 19, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.main import main
from config import apply_file
from engine.db import Store
from engine.errors import ConfigError

# Five typos, one per stage: a field, a time zone, an alert source type, a rule's duration
# and a rule's template reference. The service with the misspelt field is refused by the
# models, yet the page naming it is not reported a second time.
CONFIG = """\
teams:
  - {key: platform}
services:
  - {key: api, name: Public API, team: platform, descripton: REST API}
alert_sources:
  - {key: kuma, name: Uptime Kuma, type: uptime-kumma, team: platform}
incident_templates:
  - {key: api-outage, team: platform, title: API unavailable, services: {api: major_outage}}
status_pages:
  - {slug: status, name: Status, teams: [platform], services: [api], time_zone: Europe/Berln}
rules: [rules/*.yaml]
"""

RULES = """\
version: 1
rules:
  - id: api-down
    match: {source: kuma}
    services: [api]
    then:
      - open_incident: {template: api-outge}
  - id: api-slow
    match: {source: kuma}
    services: [api]
    for: 2mins
    then:
      - set_status: degraded
"""


def _files(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "api.yaml").write_text(RULES)
    path = tmp_path / "beacon.yaml"
    path.write_text(CONFIG)
    return path


def test_five_typos_of_five_stages_are_five_errors_in_one_run(store: Store, tmp_path: Path) -> None:
    path = _files(tmp_path)
    with pytest.raises(ConfigError) as caught:
        apply_file(store, path)
    rules = tmp_path / "rules" / "api.yaml"
    assert str(caught.value).splitlines() == [
        f"{path}:4:50: unknown field 'descripton'; did you mean 'description'?",
        f"{path}:6:36: unknown alert source type 'uptime-kumma'; did you mean 'uptime-kuma'? "
        "(known: " + str(caught.value).split("(known: ")[1].split(")")[0] + ")",
        f"{path}:10:70: status_pages.0.time_zone: unknown time zone 'Europe/Berln'; "
        "did you mean 'Europe/Berlin'?",
        f"{rules}:3:5: rule 'api-down': unknown template 'api-outge'; did you mean 'api-outage'?",
        f"{rules}:11:10: rule 'api-slow': bad duration '2mins': write a number with a unit, "
        "like 30s, 5m, 2h, 1d or 1h30m",
    ]


def test_rules_check_gives_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _files(tmp_path)
    monkeypatch.setenv("BEACON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BEACON_DATABASE_URL", raising=False)
    assert main(["apply", "--dry-run", str(path)]) == 2
    applied = capsys.readouterr().err
    assert main(["rules", "check", "--config", str(path)]) == 2
    assert capsys.readouterr().err == applied
    assert len(applied.splitlines()) == 5


def test_a_misspelt_kind_and_reference_suggest_the_near_name(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "beacon.yaml"
    path.write_text(
        "teams: [{key: platform}]\n"
        "service:\n  - {key: db, name: Database, team: platform}\n"
        "services:\n  - {key: db, name: Database, team: platfrom}\n"
        "channels:\n  - {key: chat, team: platform, type: slak, url: 'https://x.example/h'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        apply_file(store, path)
    lines = str(caught.value).splitlines()
    assert f"{path}:2:1: unknown field 'service'; did you mean 'services'?" in lines
    assert f"{path}:5:31: unknown team 'platfrom'; did you mean 'platform'?" in lines
    assert any("unknown channel type 'slak'; did you mean 'slack'?" in line for line in lines)
