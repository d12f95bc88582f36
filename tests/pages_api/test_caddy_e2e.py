"""A custom domain over HTTPS: Debian's Caddy with on-demand TLS in front of a running
`beacon serve`, reached with `curl --resolve` (docs/custom-domains.md's setup, on loopback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import migrate
from engine.db import create_store
from engine.settings import Settings
from tests.conftest import free_port, need, port_open
from tests.support import serve

from . import seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOMAIN = "status.acme.test"
CADDYFILE = """{{
	admin off
	local_certs
	skip_install_trust
	storage file_system {{
		root {storage}
	}}
	http_port {http_port}
	https_port {https_port}
	on_demand_tls {{
		ask http://127.0.0.1:{beacon_port}/api/v1/tls/ask
	}}
}}

https:// {{
	tls {{
		on_demand
	}}
	reverse_proxy 127.0.0.1:{beacon_port}
}}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("caddy-e2e")


@pytest.fixture(scope="module")
def beacon(workdir: Path) -> Iterator[str]:
    """A running `beacon serve` whose store has a page on DOMAIN and another page."""
    data = workdir / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    seed.rich_page(store, "acme", custom_domain=DOMAIN)
    seed.page(store, "other", team_key="others")
    store.dispose()
    with serve(data) as base:
        yield base


@pytest.fixture(scope="module")
def caddy(workdir: Path, beacon: str) -> Iterator[int]:
    """Caddy on free ports with on-demand TLS asking Beacon; yields its HTTPS port."""
    need(shutil.which("caddy") is not None, "caddy is not installed (apt-get install caddy)")
    need(shutil.which("curl") is not None, "curl is not installed")
    https_port, http_port = free_port(), free_port()
    beacon_port = int(beacon.rsplit(":", 1)[1])
    home = workdir / "caddy"
    home.mkdir()
    config = home / "Caddyfile"
    config.write_text(
        CADDYFILE.format(
            storage=home / "storage",
            http_port=http_port,
            https_port=https_port,
            beacon_port=beacon_port,
        )
    )
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home),
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    log = (home / "caddy.log").open("w")
    proc = subprocess.Popen(
        ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            if port_open("127.0.0.1", https_port) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, (home / "caddy.log").read_text()
        yield https_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def curl(domain: str, port: int, path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--resolve", f"{domain}:{port}:127.0.0.1",
         "-o", "-", "-w", "\\n%{http_code}", *extra, f"https://{domain}:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip


def fetch(domain: str, port: int, path: str, *extra: str) -> tuple[int, str]:
    done = curl(domain, port, path, *extra)
    assert done.returncode == 0, done.stderr
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


def test_custom_domain_serves_its_page_and_v2_api_over_https(caddy: int, workdir: Path) -> None:
    # The first request makes Caddy ask Beacon and issue a certificate from its local CA.
    code, body = fetch(DOMAIN, caddy, "/api/v2/summary.json", "-k")
    assert code == 200, body
    summary = json.loads(body)
    assert summary["page"]["name"] == "Acme Status"
    assert summary["page"]["url"] == f"https://{DOMAIN}"
    assert summary["status"]["indicator"] == "major"
    # The certificate is a real one for the domain, from Caddy's local root.
    root = workdir / "caddy" / "storage" / "pki" / "authorities" / "local" / "root.crt"
    code, body = fetch(DOMAIN, caddy, "/api/v2/status.json", "--cacert", str(root))
    assert code == 200 and json.loads(body)["status"]["description"] == "Partial System Outage"
    code, body = fetch(DOMAIN, caddy, "/", "--cacert", str(root))
    assert code == 200 and "Acme Status" in body
    code, _ = fetch(DOMAIN, caddy, "/history.rss", "--cacert", str(root))
    assert code == 200


def test_other_pages_and_the_admin_api_are_404_on_the_custom_domain(caddy: int) -> None:
    for path in ("/p/other/", "/p/other/api/v2/status.json", "/api/v1/tls/ask?domain=x",
                 "/api/v1/status-pages/acme/domain"):  # fmt: skip
        code, _ = fetch(DOMAIN, caddy, path, "-k")
        assert code == 404, path


def test_a_domain_beacon_does_not_know_gets_no_certificate(caddy: int) -> None:
    done = curl("unknown.example.test", caddy, "/", "-k")
    # No certificate means the TLS handshake fails: curl cannot connect at all.
    assert done.returncode != 0
    assert "200" not in done.stdout
