"""One config model (issue 13, item 2): `beacon apply` and `beacon rules check --config`
read a config file the same way. Each file under tests/testdata/config/bad/ is refused by
both with the same message (file, line and column), each under good/ accepted by both.
`beacon rules test --config` reads it the same way too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from engine import migrate
from engine.db import create_store
from engine.settings import Settings
from tests.conftest import ROOT

TESTDATA = ROOT / "tests" / "testdata" / "config"
BAD = sorted((TESTDATA / "bad").glob("*.yaml"))
GOOD = [*sorted((TESTDATA / "good").glob("*.yaml")), ROOT / "examples" / "beacon.yaml"]
EXPECT = re.compile(r"^# expect: (.*)$", re.M)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated embedded store: `apply --dry-run` plans against it, writing nothing."""
    data = tmp_path_factory.mktemp("data")
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    store.dispose()
    return data


@pytest.fixture
def beacon(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[object]:
    monkeypatch.setenv("BEACON_DATA_DIR", str(data_dir))
    monkeypatch.delenv("BEACON_DATABASE_URL", raising=False)
    monkeypatch.delenv("BEACON_REDIS_URL", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run


def _shown(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when inside it."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _expected(path: Path) -> list[str]:
    shown = _shown(path)
    folder = str(Path(shown).parent)
    return [
        line.replace("{file}", shown).replace("{dir}", folder)
        for line in EXPECT.findall(path.read_text())
    ]


def test_the_testdata_covers_what_the_lenient_parser_let_through() -> None:
    names = {p.stem for p in BAD}
    assert {"service-without-team", "source-without-type", "unknown-time-zone"} <= names
    assert len(BAD) >= 12 and len(GOOD) >= 4
    assert all(_expected(p) for p in BAD), "every bad file says what it expects"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_a_bad_file_is_refused_by_apply_and_rules_check_with_the_same_message(
    beacon, path: Path
) -> None:
    shown = _shown(path)
    code, out, applied = beacon("apply", "--dry-run", shown)
    assert code == 2, out
    for line in _expected(path):
        assert line in applied, (line, applied)
    code, out, checked = beacon("rules", "check", "--config", shown)
    assert code == 2, out
    assert checked == applied
    # With rule files named on the command line as well: the config is refused the same way.
    rules = TESTDATA / "good" / "rules" / "api.yaml"
    code, out, checked = beacon("rules", "check", str(rules), "--config", shown)
    assert (code, checked) == (2, applied)


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_a_good_file_is_accepted_by_apply_and_rules_check(beacon, path: Path) -> None:
    shown = _shown(path)
    code, out, err = beacon("apply", "--dry-run", shown)
    # Accepted, with objects to create in the empty store: a dry run exits 1 when something
    # would change (0 when nothing would, 2 on an error).
    assert (code, err) == (1, ""), out
    assert "dry run: nothing was written" in out
    code, out, err = beacon("rules", "check", "--config", shown)
    assert (code, err) == (0, ""), out
    assert out.endswith(": OK\n")


def test_rules_test_reads_the_config_as_apply_does(beacon, tmp_path: Path) -> None:
    """A team-less service was given a default team by the old hand parser; now `rules test
    --config` refuses it with apply's message."""
    bad = TESTDATA / "bad" / "service-without-team.yaml"
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("events: []\n")
    rules = TESTDATA / "good" / "rules" / "api.yaml"
    _code, _out, applied = beacon("apply", "--dry-run", _shown(bad))
    code, _out, tested = beacon(
        "rules", "test", str(rules), "--events", str(scenario), "--config", _shown(bad)
    )
    assert code == 2
    assert tested == applied


def test_rules_check_without_files_or_config_says_what_it_needs(beacon) -> None:
    code, _out, err = beacon("rules", "check")
    assert code == 2
    assert "name rule files, or a config file with --config" in err
