"""Every payload under the shared fixtures has hand-written expectations in some test module.

Each `tests/adapters/test_<tool>.py` declares `EXPECTATIONS = {"<tool dir>/<file>": ...}`
written from the fixture's `.meta.md`. This module gathers them and fails for any payload
file (`.json`, `.txt`) of a checked tool directory that none of them covers, and for any
expectation naming a file that does not exist.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tests.adapters import ALERT_SOURCES, PAYLOAD_SUFFIXES

ALL_TOOL_DIRS: tuple[str, ...] = (
    "alertmanager",
    "aws-cloudwatch-sns",
    "azure-monitor",
    "betterstack",
    "checkly",
    "datadog",
    "gatus",
    "grafana",
    "healthchecks",
    "newrelic",
    "pagerduty",
    "pingdom",
    "sentry",
    "uptime-kuma",
    "uptimerobot",
    "zabbix",
)
CHECKED_TOOL_DIRS: tuple[str, ...] = ALL_TOOL_DIRS


def collected_expectations() -> dict[str, object]:
    """`EXPECTATIONS` of every adapter test module, merged; a name twice is an error."""
    merged: dict[str, object] = {}
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        module = importlib.import_module(f"tests.adapters.{path.stem}")
        expectations = getattr(module, "EXPECTATIONS", None)
        if expectations is None:
            continue
        for name, expect in expectations.items():
            assert name not in merged, f"{name} has expectations in two modules"
            merged[name] = expect
    return merged


def missing_expectations(
    root: Path, tool_dirs: Iterable[str], expectations: Mapping[str, object]
) -> list[str]:
    """Payload files under `root/<tool dir>` without an entry in `expectations`."""
    missing = []
    for tool_dir in tool_dirs:
        for path in sorted((root / tool_dir).iterdir()):
            if path.suffix in PAYLOAD_SUFFIXES and not path.name.endswith(".meta.md"):
                name = f"{tool_dir}/{path.name}"
                if name not in expectations:
                    missing.append(name)
    return missing


def test_the_shared_fixtures_are_there() -> None:
    # A missing fixture tree must fail loudly, not make every coverage check vacuous.
    assert ALERT_SOURCES.is_dir(), f"{ALERT_SOURCES} not found (set BEACON_SHARED_DIR)"


def test_every_tool_directory_is_known() -> None:
    on_disk = {p.name for p in ALERT_SOURCES.iterdir() if p.is_dir()}
    assert on_disk == set(ALL_TOOL_DIRS)


@pytest.mark.parametrize("tool_dir", CHECKED_TOOL_DIRS)
def test_every_payload_of_a_tool_has_hand_written_expectations(tool_dir: str) -> None:
    missing = missing_expectations(ALERT_SOURCES, [tool_dir], collected_expectations())
    assert missing == [], f"fixtures without expectations: {missing}"


def test_every_expectation_names_an_existing_payload() -> None:
    for name in collected_expectations():
        assert (ALERT_SOURCES / name).is_file(), f"{name}: no such fixture"


def test_a_payload_without_expectations_is_reported(tmp_path: Path) -> None:
    tool = tmp_path / "newtool"
    tool.mkdir()
    (tool / "firing.json").write_text("{}")
    (tool / "firing.meta.md").write_text("# meta")
    (tool / "template.txt").write_text("$X")
    covered = {"newtool/firing.json": object()}
    assert missing_expectations(tmp_path, ["newtool"], covered) == ["newtool/template.txt"]
