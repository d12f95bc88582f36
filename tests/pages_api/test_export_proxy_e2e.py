"""The static export behind the documented proxies: Debian's Caddy with the Caddyfile of
docs/static-export.md and nginx with its nginx example, in front of a running `beacon serve`
with BEACON_EXPORT_DIR. Both serve the exported documents with Beacon's own headers, send
everything dynamic to Beacon, keep serving the page, its v2 JSON and its feeds while Beacon
is stopped, and follow a status change within 2 s once it runs again."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine import migrate
from engine.accounts import create_api_key
from engine.db import create_store
from engine.settings import Settings
from tests.conftest import ROOT, free_port, need, port_open
from tests.support import Served, wait_for

from . import seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOC = ROOT / "docs" / "static-export.md"
#: The page's exported documents: what must outlive Beacon.
EXPORTED = [
    "/p/acme/",
    "/p/acme/history",
    "/p/acme/page.js",
    "/p/acme/api/v2/summary.json",
    "/p/acme/api/v2/status.json",
    "/p/acme/api/v2/components.json",
    "/p/acme/api/v2/incidents.json",
    "/p/acme/api/v2/incidents/unresolved.json",
    "/p/acme/api/v2/scheduled-maintenances.json",
    "/p/acme/api/v2/scheduled-maintenances/upcoming.json",
    "/p/acme/api/v2/scheduled-maintenances/active.json",
    "/p/acme/history.rss",
    "/p/acme/history.atom",
    "/p/acme/maintenance.ics",
    "/p/acme/badge.svg",
]
#: Headers a proxy must send as Beacon does for the same document.
SAME = (
    "content-type",
    "cache-control",
    "access-control-allow-origin",
    "x-content-type-options",
    "referrer-policy",
    "content-security-policy",
)


def documented(lang: str) -> str:
    """The one `lang` block of docs/static-export.md."""
    [block] = re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(), re.M | re.S)
    return block


def localised(text: str, export: Path, beacon_port: int) -> str:
    return text.replace("/var/lib/beacon/export", str(export)).replace(
        "127.0.0.1:8000", f"127.0.0.1:{beacon_port}"
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-proxies")


@pytest.fixture(scope="module")
def seeded(workdir: Path) -> dict[str, object]:
    data = workdir / "data"
    store = create_store(Settings.from_env({"BEACON_DATA_DIR": str(data)}))
    migrate.upgrade(store)
    rich = seed.rich_page(store, "acme")
    seed.page(store, "secret", type="private", team_key="others")
    key = create_api_key(store, name="e2e", admin=True)
    store.dispose()
    return {"data": data, "db": rich.page.service_ids["db"], "key": key}


@pytest.fixture(scope="module")
def export_dir(workdir: Path) -> Path:
    return workdir / "export"


@pytest.fixture(scope="module")
def beacon(seeded: dict[str, object], export_dir: Path, workdir: Path) -> Iterator[Served]:
    served = Served(
        seeded["data"],  # type: ignore[arg-type]
        env={"BEACON_EXPORT_DIR": str(export_dir)},
        log_path=workdir / "serve.log",
    )
    served.start()
    try:
        # `beacon serve` renders every page at start: the export follows.
        wait_for(lambda: (export_dir / "p/acme/badge.svg").exists(), 30, "the first export")
        yield served
    finally:
        served.stop()


def _started(cmd: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    for _ in range(100):
        if port_open("127.0.0.1", port) or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert proc.poll() is None, log.read_text()
    return proc


def _stopped(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def caddy(workdir: Path, export_dir: Path, beacon: Served) -> Iterator[str]:
    """Debian's caddy with the documented Caddyfile, on plain HTTP at a free port."""
    need(shutil.which("caddy") is not None, "caddy is not installed (apt-get install caddy)")
    port = free_port()
    home = workdir / "caddy"
    home.mkdir()
    site = localised(documented("caddyfile"), export_dir, beacon.port)
    site = site.replace("beacon.example.com {", f"http://127.0.0.1:{port} {{", 1)
    config = home / "Caddyfile"
    config.write_text(
        f"{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {{\n\t\troot {home}\n\t}}\n}}\n"
        + site
    )
    proc = _started(
        ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
        port,
        home / "caddy.log",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stopped(proc)


NGINX_MAIN = """
user root;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
{server}
}}
"""


@pytest.fixture(scope="module")
def nginx(workdir: Path, export_dir: Path, beacon: Served) -> Iterator[str]:
    """nginx with the documented example (its `server` in a minimal `http` block)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    need(Path(binary).exists(), "nginx is not installed (apt-get install nginx-light)")
    port = free_port()
    home = workdir / "nginx"
    (home / "tmp").mkdir(parents=True)
    server = localised(documented("nginx"), export_dir, beacon.port)
    server = server.replace("listen 80;", f"listen 127.0.0.1:{port};", 1)
    config = home / "nginx.conf"
    config.write_text(NGINX_MAIN.format(root=home, server=server))
    proc = _started([binary, "-c", str(config), "-g", "daemon off;"], port, home / "nginx.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stopped(proc)


@pytest.fixture(scope="module")
def proxies(caddy: str, nginx: str) -> dict[str, str]:
    return {"caddy": caddy, "nginx": nginx}


def get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers={"Accept-Encoding": "identity", **headers}, timeout=10)


def permalinks(export_dir: Path) -> list[str]:
    """The incident permalinks the exported page links to (exported with it)."""
    page = (export_dir / "p/acme/index.html").read_text()
    found = sorted(set(re.findall(r'href="(incidents/[0-9a-z]+)"', page)))
    assert found, "the page links no incident"
    return [f"/p/acme/{link}" for link in found]


def test_the_proxies_serve_the_exported_documents_with_beacons_headers(
    beacon: Served, proxies: dict[str, str], export_dir: Path
) -> None:
    for name, base in proxies.items():
        for path in EXPORTED + permalinks(export_dir):
            ours, theirs = get(beacon.url + path), get(base + path)
            where = f"{name} {path}"
            assert theirs.status_code == 200, where
            # A file's validators (the time and size), not Beacon's (a content hash).
            assert theirs.headers["etag"] != ours.headers["etag"], where
            assert theirs.content == ours.content, where
            for header in SAME:
                assert theirs.headers.get(header) == ours.headers.get(header), (where, header)
            etag = theirs.headers["etag"]
            assert get(base + path, **{"If-None-Match": etag}).status_code == 304, where
        page = get(base + "/p/acme/", **{"Accept-Encoding": "gzip"})
        assert page.headers["content-encoding"] == "gzip", name
        assert b"Acme Status" in page.content  # httpx decoded the precompressed file


def test_the_proxies_send_everything_dynamic_to_beacon(
    beacon: Served, proxies: dict[str, str]
) -> None:
    for name, base in proxies.items():
        # A private page is never exported: Beacon asks who is there.
        assert get(base + "/p/secret/api/v2/summary.json").status_code == 401, name
        # Older archive pages have a query string: rendered by Beacon.
        older = get(base + "/p/acme/history?before=2000-01-01T00:00:00%2B00:00")
        assert older.status_code == 200 and b"Acme Status" in older.content, name
        # Subscribing posts to Beacon.
        answer = httpx.post(
            base + "/p/acme/subscribe", json={"channel": "email", "address": "not-an-address"}
        )
        assert answer.status_code in (400, 422), (name, answer.status_code, answer.text)
        assert get(base + "/healthz").status_code == 200, name
        assert get(base + "/p/acme").status_code == 308, name


def test_with_beacon_stopped_the_page_is_served_and_follows_a_change_once_it_runs_again(
    beacon: Served, proxies: dict[str, str], seeded: dict[str, object], export_dir: Path
) -> None:
    links = permalinks(export_dir)
    before = {path: get(proxies["caddy"] + path).content for path in EXPORTED + links}
    beacon.stop()
    for name, base in proxies.items():
        for path in ["/p/acme/", "/p/acme/api/v2/summary.json", "/p/acme/history.rss",
                     "/p/acme/history.atom", "/p/acme/maintenance.ics", *links]:  # fmt: skip
            answer = get(base + path)
            assert answer.status_code == 200, (name, path)
            assert answer.content == before[path], (name, path)
        # What only Beacon answers is down with it.
        assert get(base + "/healthz").status_code == 502, name
    summary = json.loads(before["/p/acme/api/v2/summary.json"])
    assert summary["page"]["name"] == "Acme Status"

    started = time.time()
    beacon.start()
    manifest = next((export_dir / ".beacon/pages").iterdir())
    # The render of every page at start has run (the next one may follow a second later).
    wait_for(
        lambda: json.loads(manifest.read_bytes())["rendered_at"] > _iso(started),
        30,
        "the export after the restart",
    )
    changed = time.perf_counter()
    answer = httpx.put(
        f"{proxies['caddy']}/api/v1/services/{seeded['db']}/override",
        json={"status": "major_outage"},
        headers={"Authorization": f"Bearer {seeded['key']}"},
    )
    assert answer.status_code == 200, answer.text

    def follows(base: str) -> bool:
        doc = get(base + "/p/acme/api/v2/summary.json")
        statuses = {c["name"]: c["status"] for c in doc.json()["components"]}
        return statuses["Database"] == "major_outage"

    wait_for(lambda: all(follows(base) for base in proxies.values()), 2, "the export", poll=0.05)
    took = time.perf_counter() - changed
    assert took < 2, took
    # The page itself (through the precompressed file) and the badge followed too.
    page = get(proxies["caddy"] + "/p/acme/", **{"Accept-Encoding": "gzip"})
    assert "Major Outage" in page.text
    assert (
        gzip.decompress((export_dir / "p/acme/index.html.gz").read_bytes())
        == (export_dir / "p/acme/index.html").read_bytes()
    )


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()
