"""`beacon -v` logs at INFO, and must still keep secrets out of the log: httpx logs every
request's full URL at INFO ("HTTP Request: POST https://hooks.slack.com/services/T0/B0/<secret>"),
and Beacon's outbound requests go to URLs whose path is the secret (chat hooks, webhook
subscribers, webhook channels)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT
from tests.support import RecordingServer

SECRET_PATH = "/services/T000/B000/hook-secret-9f3a"

# What a worker does under `beacon -v`: the logging `cli.main.main` sets up, then a chat
# hook's POST through the one outbound path.
SEND = """
import sys
from cli.main import configure_logging
from adapters.channels import outbound
configure_logging(verbose=True)
import logging
logging.getLogger("beacon.test").info("logging at INFO")
outbound.post(sys.argv[1], content=b"{}", allow_private=True, deadline=5)
"""


def test_a_hooks_url_never_reaches_the_verbose_log() -> None:
    receiver = RecordingServer()
    try:
        done = subprocess.run(
            [sys.executable, "-c", SEND, receiver.url + SECRET_PATH],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    assert [r["path"] for r in receiver.requests] == [SECRET_PATH]
    assert "logging at INFO" in done.stderr  # the log is verbose
    assert "hook-secret" not in done.stderr + done.stdout
