"""The example config's rules (examples/rules/*.yaml) pass `beacon rules check`."""

from __future__ import annotations

from cli.main import main
from tests.conftest import ROOT


def test_the_example_rules_pass_rules_check(capsys):
    config = ROOT / "examples" / "beacon.yaml"
    files = sorted(str(p) for p in (ROOT / "examples" / "rules").glob("*.yaml"))
    assert files
    code = main(["rules", "check", *files, "--config", str(config)])
    assert code == 0, capsys.readouterr().out
