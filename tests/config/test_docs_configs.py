"""Every config file shown in docs/ and the README applies (issue 19, item 7): each YAML
block whose top-level keys are config kinds is applied with `--dry-run` over the example
(examples/beacon.yaml applied first, so a block may add to it, as the docs suggest), and
the reference's copy of the example is the example itself. A block's `{env: NAME}` secrets
are set, as its reader would set them. The shell commands of the docs
are run by tests/cli/test_docs_commands.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from config import apply_file
from config.models import ConfigFile
from engine.db import Store
from tests.conftest import ROOT

DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.M | re.S)
KINDS = set(ConfigFile.model_fields)
#: A secret read from the environment (`{env: NAME}`): the block's reader sets NAME.
ENV_REF = re.compile(r"\{env: *([A-Za-z_][A-Za-z0-9_]*) *\}")


def _config_blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            body = match.group(1)
            try:
                data = yaml.safe_load(body)
            except yaml.YAMLError:
                continue  # not YAML Beacon reads (a tool's own file with templates)
            if (
                isinstance(data, dict)
                and data
                and all(isinstance(k, str) and (k in KINDS or k.startswith("x-")) for k in data)
            ):
                line = text[: match.start()].count("\n") + 1
                found.append((f"{doc.relative_to(ROOT)}:{line}", body))
    return found


BLOCKS = _config_blocks()


def test_the_docs_show_config_files_and_the_reference_shows_every_kind() -> None:
    assert len(BLOCKS) >= 4
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for kind in KINDS:
        assert f"## `{kind}`" in reference, kind


def test_the_reference_shows_the_example_as_it_is() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    assert (ROOT / "examples" / "beacon.yaml").read_text() in reference


@pytest.mark.parametrize("where,body", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_each_config_block_of_the_docs_applies(
    sqlite_store: Store, tmp_path: Path, where: str, body: str
) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    apply_file(sqlite_store, tmp_path / "examples" / "beacon.yaml")
    block = tmp_path / "examples" / "docs-block.yaml"
    block.write_text(body)
    env = {
        name: "https://hooks.example.test/docs" if name.endswith("_URL") else "docs-secret-1"
        for name in ENV_REF.findall(body)
    }
    apply_file(sqlite_store, block, dry_run=True, env=env)
