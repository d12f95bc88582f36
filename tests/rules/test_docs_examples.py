"""Every worked example of docs/rules.md, run by `beacon rules test` exactly as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.main import main
from tests.conftest import ROOT

DOC = ROOT / "docs" / "rules.md"
BLOCK = re.compile(r"```yaml (config|rules|scenario)\n(.*?)```", re.S)


def _examples() -> tuple[str, list[tuple[str, str, list[str]]]]:
    config = ""
    examples: list[tuple[str, str, list[str]]] = []
    title = ""
    for chunk in re.split(r"^### ", DOC.read_text(), flags=re.M):
        title = chunk.splitlines()[0] if chunk else title
        for kind, body in BLOCK.findall(chunk):
            if kind == "config":
                config = body
            elif kind == "rules":
                examples.append((title, body, []))
            else:
                examples[-1][2].append(body)
    return config, examples


CONFIG, EXAMPLES = _examples()


def test_the_docs_have_at_least_eight_worked_examples_with_expectations():
    assert len(EXAMPLES) >= 8
    assert all(scenarios and all("expect:" in s for s in scenarios) for _, _, scenarios in EXAMPLES)


def _run(tmp_path: Path, rules: str, scenario: str) -> int:
    (tmp_path / "beacon.yaml").write_text(CONFIG)
    (tmp_path / "rules.yaml").write_text(rules)
    (tmp_path / "scenario.yaml").write_text(scenario)
    return main(
        [
            "rules",
            "test",
            str(tmp_path / "rules.yaml"),
            "--events",
            str(tmp_path / "scenario.yaml"),
            "--config",
            str(tmp_path / "beacon.yaml"),
        ]
    )


@pytest.mark.parametrize("title,rules,scenarios", EXAMPLES, ids=[e[0][:40] for e in EXAMPLES])
def test_each_worked_example_produces_its_stated_intents(tmp_path, capsys, title, rules, scenarios):
    for scenario in scenarios:
        code = _run(tmp_path, rules, scenario)
        captured = capsys.readouterr()
        assert code == 0, f"{title}\n{captured.out}\n{captured.err}"
        assert captured.out.strip(), "one JSON line per intent is printed"


def test_a_flipped_expectation_makes_rules_test_exit_1(tmp_path, capsys):
    title, rules, scenarios = EXAMPLES[0]
    flipped = scenarios[0].replace("status: major_outage}", "status: degraded}", 1)
    assert flipped != scenarios[0]
    assert _run(tmp_path, rules, flipped) == 1
    err = capsys.readouterr().err
    assert "status: expected 'degraded', got 'major_outage'" in err


def test_rules_check_prints_every_problem_and_exits_1(tmp_path, capsys):
    (tmp_path / "beacon.yaml").write_text(CONFIG)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - id: x\n    match: {source: nowhere}\n"
        "    services: [api]\n    then: [{set_status: degraded}]\n"
        "  - id: y\n    match: {severity: {like: 1}}\n    then: [{notify: {channel: c}}]\n"
    )
    code = main(["rules", "check", str(bad), "--config", str(tmp_path / "beacon.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{bad}:3:5: rule 'x': unknown source 'nowhere'" in out
    assert f"{bad}:8:24: rule 'y': unknown operator 'like'" in out


def test_rules_check_accepts_every_example(tmp_path, capsys):
    (tmp_path / "beacon.yaml").write_text(CONFIG)
    for index, (_title, rules, _s) in enumerate(EXAMPLES):
        path = tmp_path / f"{index:02d}.yaml"
        path.write_text(rules.replace("id: ", f"id: x{index}-"))
    files = sorted(str(p) for p in tmp_path.glob("[0-9]*.yaml"))
    assert main(["rules", "check", *files, "--config", str(tmp_path / "beacon.yaml")]) == 0
