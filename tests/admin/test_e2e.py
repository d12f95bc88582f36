"""`beacon serve --config examples/beacon.yaml` (what `make run` does): the example is
applied at start, its URLs are printed, and the admin API answers over real HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support import beacon, beacon_env, serve

pytestmark = pytest.mark.e2e


def test_serve_applies_the_example_and_prints_its_urls(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    with serve(data, "--config", "examples/beacon.yaml", log_path=log) as base:
        printed = log.read_text()
        assert "/p/northwind/" in printed and "/p/northwind-internal/" in printed
        hooks = re.findall(r"/api/v1/events/([A-Za-z0-9_-]+)", printed)
        assert len(hooks) == 2
        # Without BEACON_BASE_URL, links name the port it listens on, not 8000.
        assert printed.count(f"{base}/api/v1/events/") == 2
        summary = httpx.get(f"{base}/p/northwind/api/v2/summary.json", timeout=10).json()
        assert summary["page"]["url"] == f"{base}/p/northwind"
        # The README's tour links the public page's calendar: the example's window is on it.
        ics = httpx.get(f"{base}/p/northwind/maintenance.ics", timeout=10).text
        unfolded = ics.replace("\r\n ", "")
        assert "SUMMARY:Database upgrade" in unfolded and "Affected: Web App" in unfolded
        made = beacon(["apikey", "create", "--team", "platform", "--name", "e2e"], beacon_env(data))
        key = re.search(r"bk_[A-Za-z0-9_-]+", made.stdout + made.stderr)
        assert key, made.stdout + made.stderr
        headers = {"Authorization": f"Bearer {key.group(0)}"}
        assert httpx.get(f"{base}/api/v1/pages", timeout=10).status_code == 401
        pages = httpx.get(f"{base}/api/v1/pages", headers=headers, timeout=10).json()
        assert {p["slug"] for p in pages} == {"northwind", "northwind-internal"}
        sources = httpx.get(f"{base}/api/v1/alert-sources", headers=headers, timeout=10).json()
        # The keys were printed once, by the apply that made them: the API shows their ends.
        assert all(s["integration_key"] is None for s in sources)
        assert sorted(s["key_hint"] for s in sources) == sorted(h[-4:] for h in hooks)
        doc = httpx.get(f"{base}/api/v1/openapi.json", headers=headers, timeout=10).json()
        assert "/api/v1/services/{id}/override" in doc["paths"]
    again = beacon(["apply", "examples/beacon.yaml"], beacon_env(data))
    assert again.returncode == 0, again.stderr
    assert "no changes" in again.stdout
