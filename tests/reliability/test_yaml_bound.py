"""Every YAML loader caps what a file may build: a few hundred bytes of nested aliases (the
"billion laughs") are refused at once with the file and line, by `beacon apply`, by the
config reader and by `beacon rules check --config`, before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.load import read_config
from engine.errors import ConfigError
from tests.support import beacon, beacon_env

#: Under 300 bytes (the issue's took 283) that expand to 9^7 (4.8 million) values.
BOMB = """teams:
  - &a [x, x, x, x, x, x, x, x, x]
  - &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  - &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  - &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  - &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  - &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  - &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""

RULES = """version: 1
rules:
  - id: r
    match: {source: am}
    services: [api]
    then: [{set_status: degraded}]
"""


def test_the_bomb_is_as_small_as_the_issue_says():
    assert len(BOMB.encode()) < 283


def test_the_config_reader_refuses_an_alias_bomb_with_file_and_line(tmp_path: Path):
    path = tmp_path / "beacon.yaml"
    path.write_text(BOMB)
    with pytest.raises(ConfigError, match=r"beacon\.yaml:7:5: this value expands to more than"):
        read_config(path)


def test_an_alias_that_stays_small_still_works(tmp_path: Path):
    path = tmp_path / "beacon.yaml"
    path.write_text(
        "x-team: &t {team: platform}\n"
        "teams: [{key: platform}]\n"
        "services:\n"
        "  - {key: api, name: API, <<: *t}\n"
        "  - {key: db, name: DB, <<: *t}\n"
    )
    config, _ = read_config(path)
    assert [s.team for s in config.services] == ["platform", "platform"]


def test_beacon_apply_and_rules_check_refuse_the_bomb(tmp_path: Path):
    config = tmp_path / "beacon.yaml"
    config.write_text(BOMB)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = beacon_env(tmp_path / "data")
    applied = beacon(["apply", str(config)], env)
    assert applied.returncode != 0
    assert "beacon.yaml:7:5: this value expands to more than" in applied.stderr, applied.stderr
    checked = beacon(["rules", "check", str(rules), "--config", str(config)], env)
    assert checked.returncode != 0
    assert "beacon.yaml:7:5: this value expands to more than" in checked.stderr + checked.stdout
