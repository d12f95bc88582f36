"""`make run`, the README's first command: Beacon answers within 60 s and serves the example."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, need

pytestmark = pytest.mark.e2e


def test_make_run_answers_healthz_within_60s_and_serves_the_example_page(tmp_path: Path) -> None:
    # `make test` builds .venv before pytest runs; without it `make run` would spend minutes
    # installing, which is the first-run experience, not what this test measures.
    need((ROOT / ".venv" / ".installed").exists(), ".venv is not set up (run `make test`)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env["BEACON_DATA_DIR"] = str(tmp_path / "data")
    log = (tmp_path / "make-run.log").open("w")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make's child server gets the signal too
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while time.monotonic() - started < 60:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            output = (tmp_path / "make-run.log").read_text()
            pytest.fail(f"make run did not answer /healthz within 60 s:\n{output}")
        page = httpx.get(f"{base}/p/northwind/", timeout=10)
        assert page.status_code == 200
        assert "Northwind Status" in page.text and "Public API" in page.text
        printed = (tmp_path / "make-run.log").read_text()
        assert "/p/northwind/" in printed and "/api/v1/events/" in printed
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _planned(target: str, venv: Path) -> str:
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return planned.stdout


def test_make_run_installs_what_running_needs_and_make_test_the_test_tooling(
    tmp_path: Path,
) -> None:
    run = _planned("run", tmp_path / "venv")
    assert "pip install --quiet -e ." in run
    assert "[dev]" not in run
    for target in ("test", "lint"):
        assert "-e '.[dev]'" in _planned(target, tmp_path / "venv"), target
