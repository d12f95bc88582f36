"""Every shell command in README.md and docs/ runs as written (issue 19): the README's tour
against `beacon serve --config examples/beacon.yaml`, the scaled-mode recipe on PostgreSQL
and Redis, the custom-domain and backup commands, and every synopsis line checked against
the `beacon` parser. A shell block that no handler below claims fails the test, so a new
command in the docs comes with its check. (YAML config blocks are tests/config's.)

What is changed before running: the address (`http://127.0.0.1:8000`, `beacon.example.com`)
becomes the test server's, `.venv/bin/beacon` and `beacon` this checkout's, paths outside
the test's directory its own; `events tail`, which follows for ever, runs for 3 seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import build_parser
from tests.conftest import REDIS_URL, ROOT, free_port, need, port_open
from tests.support import beacon_env, serve

pytestmark = pytest.mark.e2e

SHELL = ("sh", "bash", "shell", "console")


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def shell_blocks() -> list[Block]:
    """Fenced shell blocks, untyped fenced blocks of `$ ` prompts, and indented lines that
    run `beacon`, from README.md and docs/*.md."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text().split("\n")
        name = str(path.relative_to(ROOT))
        index = 0
        while index < len(lines):
            fence = re.match(r"^(\s*)```(.*)$", lines[index])
            if fence:
                lang, start, body = fence.group(2).strip(), index, []
                index += 1
                while index < len(lines) and not re.match(r"^\s*```\s*$", lines[index]):
                    body.append(lines[index][len(fence.group(1)) :])
                    index += 1
                text = "\n".join(body)
                if lang in SHELL or (lang == "" and text.lstrip().startswith("$ ")):
                    found.append(Block(name, start + 1, text))
            elif re.match(r"^    (\$ )?beacon ", lines[index]) and not lines[index - 1].strip(
                " |"
            ).startswith(("-", "|")):
                found.append(Block(name, index + 1, lines[index].strip()))
            index += 1
    return found


def _commands(text: str) -> list[str]:
    """The block's commands: prompts and comments dropped, continuation lines joined,
    output lines (after a `$ ` prompt) left out."""
    commands: list[str] = []
    prompted = any(line.startswith("$ ") for line in text.splitlines())
    joining = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if joining:
            commands[-1] += "\n" + line
        elif prompted and not line.startswith("$ "):
            continue
        elif line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.removeprefix("$ ").strip())
        # Inside a quoted string that goes on (a JSON body); a comment's apostrophe is not.
        unquoted = re.sub(r"\s{2,}#.*$", "", commands[-1]) if commands else ""
        joining = line.endswith("\\") or unquoted.count("'") % 2 == 1
    return commands


# --- synopsis lines ------------------------------------------------------------------------


def _check_synopsis(line: str) -> None:
    """`beacon CMD [SUB] ... [--opt ...]`, alternatives after ` / ` (`events tail SOURCE`,
    or a sibling subcommand: `... / set-password EMAIL`): each names a command, and that
    command takes every option shown."""
    usage = line.split("#", 1)[0]
    group: list[str] = []
    for alternative in usage.split(" / "):
        words = [w for w in alternative.split() if w != "beacon"]
        if words and words[0] not in _top_commands() and group:
            words = [group[0], *words]  # a sibling of the line's first command
        path = []
        for word in words:
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            path.append(word)
        group = group or path
        helptext, depth = _help(path)
        assert depth == len(path), f"{line!r}: `beacon {' '.join(path)}` is not a command"
        for option in re.findall(r"--[a-z][a-z-]*", alternative):
            assert option in helptext, f"{line!r}: `beacon {' '.join(path)}` has no {option}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _top_commands() -> set[str]:
    return set(_subcommands(build_parser()))


def _help(path: list[str]) -> tuple[str, int]:
    """The help of the deepest command `path` names, and how many of its words name one."""
    parser = build_parser()
    depth = 0
    for word in path:
        found = _subcommands(parser).get(word)
        if found is None:
            break
        parser, depth = found, depth + 1
    return parser.format_help(), depth


# --- running blocks ------------------------------------------------------------------------


def _script(commands: list[str], base: str) -> str:
    lines = ["set -euo pipefail"]
    for command in commands:
        command = command.replace("http://127.0.0.1:8000", base)
        command = command.replace("https://beacon.example.com", base)
        command = command.replace(".venv/bin/beacon", "beacon")
        if re.match(r"^beacon events tail\b", command):
            # `tail` follows until stopped: three seconds of it.
            command = f"timeout 3 {command.split('#')[0]} || [ $? = 124 ]"
        label = command.splitlines()[0][:60].replace("'", "")
        lines.append(f"echo '::: {label}'")
        lines.append(command)
        lines.append("echo")  # curl's answers end without a newline
    return "\n".join(lines) + "\n"


def _run(script: str, env: dict[str, str], cwd: Path) -> str:
    """`script` in bash, with `beacon` on the PATH meaning this checkout's."""
    bin_dir = Path(env["BEACON_DATA_DIR"]).parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "beacon"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cli "$@"\n')
    wrapper.chmod(0o755)
    ran = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env={**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, f"{script}\n--- out:\n{ran.stdout}\n--- err:\n{ran.stderr}"
    return ran.stdout


def _claim(blocks: list[Block], file: str, starts: str) -> list[Block]:
    claimed = [b for b in blocks if b.file == file and b.text.lstrip().startswith(starts)]
    assert claimed, f"no shell block of {file} starts with {starts!r} any more"
    for block in claimed:
        blocks.remove(block)
    return claimed


def test_every_command_in_the_readme_and_docs_runs(tmp_path: Path) -> None:
    blocks = shell_blocks()
    assert blocks

    # `make run` has its own test (tests/cli/test_make_run.py); `make test` is CI itself.
    [make] = _claim(blocks, "README.md", "make run    #")
    assert (ROOT / "tests" / "cli" / "test_make_run.py").is_file()
    for target in ("run", "test"):
        assert subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True).returncode == 0
    _claim(blocks, "README.md", "make run")  # the tour's first step, the same command

    # The synopsis of every command.
    for block in _claim(blocks, "README.md", "beacon serve [--host"):
        for line in _commands(block.text):
            _check_synopsis(line)

    data = tmp_path / "data"
    env = beacon_env(data)
    with serve(data, "--config", "examples/beacon.yaml", log_path=tmp_path / "serve.log") as base:
        # The tour, in order: a monitor goes down, comes back, and the operator asks why.
        tour = [
            *_claim(blocks, "README.md", "curl -s http://127.0.0.1:8000/api/v1/events/"),
            *_claim(blocks, "README.md", "KEY=$(.venv/bin/beacon apikey create"),
        ]
        commands = [c for b in tour for c in _commands(b.text)]
        out = _run(_script(commands, base), env, ROOT)
        assert out.count('"accepted":1') == 2, out
        assert '"service":"api"' in out and '"events":[' in out, out
        # Custom domains: the status and the verify call, with an admin key (the page
        # `acme` of the doc is the example's `northwind`, which has no custom domain).
        domain_blocks = [b for b in blocks if b.file == "docs/custom-domains.md"]
        for block in domain_blocks:
            blocks.remove(block)
        assert len(domain_blocks) == 2
        commands = [
            "KEY=$(beacon apikey create --admin --name docs)",
            *(
                c.replace("/status-pages/acme/", "/status-pages/northwind/")
                for b in domain_blocks
                for c in _commands(b.text)
            ),
        ]
        out = _run(_script(commands, base), env, ROOT)
        answers = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert len(answers) == 2, out
        for key in ("page", "domain", "expected_target", "ok", "targets", "error"):
            assert key in answers[0], (key, answers[0])
        # Backups, while it runs.
        [backup] = _claim(blocks, "docs/operations.md", "beacon backup ")
        command = backup.text.replace("/backups/", f"{tmp_path}/")
        out = _run(_script([command], base), env, ROOT)
        assert "backed up" in out and list(tmp_path.glob("beacon-*.db"))

    # Scaled mode, on the real PostgreSQL and Redis.
    [scaled] = _claim(blocks, "README.md", "export BEACON_DATABASE_URL=")
    _run_scaled(scaled, tmp_path)

    assert not blocks, "shell blocks no handler here runs:\n" + "\n".join(
        f"{b.where}: {b.text[:80]}" for b in blocks
    )


def _run_scaled(block: Block, tmp_path: Path) -> None:
    need(port_open("127.0.0.1", 5432), "PostgreSQL is not running on 127.0.0.1:5432")
    need(port_open("127.0.0.1", 6379), "Redis is not running on 127.0.0.1:6379")
    import secrets

    import psycopg

    from tests.conftest import PG_ADMIN_URL

    name = f"beacon_docs_{secrets.token_hex(5)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    pg_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    prefix = f"beacon-docs-{secrets.token_hex(5)}:"
    port = free_port()
    work = tmp_path / "scaled"
    work.mkdir()
    # `beacon apply beacon.yaml` in a directory holding the operator's config.
    (work / "beacon.yaml").write_text((ROOT / "examples" / "beacon.yaml").read_text())
    for folder in ("rules", "assets"):
        os.symlink(ROOT / "examples" / folder, work / folder)
    commands = []
    for command in _commands(block.text):
        command = command.replace("postgresql://beacon@db.internal/beacon", pg_url)
        command = command.replace("redis://redis.internal:6379/0", REDIS_URL)
        command = command.replace("--host 0.0.0.0 --port 8000", f"--host 127.0.0.1 --port {port}")
        commands.append(command)
    script = _script(commands, "")
    script = script.replace(
        "set -euo pipefail",
        f"set -euo pipefail\nexport BEACON_REDIS_PREFIX={prefix}\n"
        f"trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
    )
    ready = f"http://127.0.0.1:{port}/readyz"
    script += f"for i in $(seq 100); do curl -sf {ready} && break; sleep 0.3; done\n"
    env = beacon_env(tmp_path / "scaled-data")
    try:
        out = _run(script, env, work)
        assert "database at revision" in out and '"status":"ok"' in out.replace(" ", ""), out
    finally:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"*{prefix.rstrip(':')}*", count=1000):
            client.delete(key)
        client.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
