"""Rough costs of the pages-api documents (reported, never asserted).

    PYTHONPATH=. BEACON_SHARED_DIR=../shared python bench/pages_api.py

1. Render time of each v2 document, feed and badge for a page of 20 services in 4 groups
   with 50 incidents and 3 maintenances (what every page render adds).
2. Requests per second through the in-process app for `summary.json`: a public page (the
   page cache's fast path) and a private page read by a member (access check + cache).
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta

from starlette.testclient import TestClient

from cli.wiring import build_runtime
from engine import incidents, migrate, pagedata
from engine.accounts import create_api_key
from engine.settings import Settings
from engine.tables import utcnow
from pages import documents
from pages.app import create_app
from tests.pages_api import seed

SERVICES = tuple((f"svc{i}", f"Service {i}", f"Group {i % 4}") for i in range(20))


def main() -> None:
    rt = build_runtime(Settings.from_env({"BEACON_DATA_DIR": tempfile.mkdtemp()}))
    migrate.upgrade(rt.store)
    rich = seed.rich_page(rt.store, "acme")
    page = seed.page(rt.store, "big", services_spec=SERVICES)
    seed.page(rt.store, "secret", team_key="acme-team", type="private")
    now = utcnow()
    with rt.store.begin() as conn:
        for n in range(50):
            iid = incidents.create(
                conn,
                team_id=page.team_id,
                title=f"Incident {n}",
                message="Investigating.",
                impacts={page.service_ids[f"svc{n % 20}"]: "degraded"},
                started_at=now - timedelta(hours=n + 1),
                now=now - timedelta(hours=n + 1),
            )
            incidents.resolve(conn, iid, message="Fixed.", now=now - timedelta(hours=n))
    with rt.store.read() as conn:
        snap = pagedata.load_page(conn, page.id, now)
    print(f"render cost per document, page of 20 services and {len(snap.incidents)} incidents:")
    total = 0.0
    for name in documents.RENDERERS:
        start = time.perf_counter()
        for _ in range(50):
            documents.renderer(name)(snap)
        ms = (time.perf_counter() - start) / 50 * 1000
        if not name.endswith("html") and name != "history":
            total += ms
        print(f"  {name:46s} {ms:7.2f} ms")
    print(f"  {'pages-api documents together':46s} {total:7.2f} ms")

    client = TestClient(create_app(rt))
    member = {"Authorization": "Bearer " + create_api_key(rt.store, name="b", team="acme-team")}
    for label, path, headers in (
        ("public summary.json (fast path)", "/p/acme/api/v2/summary.json", {}),
        ("private summary.json (member)", "/p/secret/api/v2/summary.json", member),
    ):
        assert client.get(path, headers=headers).status_code == 200
        start = time.perf_counter()
        count = 300
        for _ in range(count):
            client.get(path, headers=headers)
        rate = count / (time.perf_counter() - start)
        print(f"{label:34s} {rate:8.0f} requests/s (TestClient, one thread)")
    assert rich


if __name__ == "__main__":
    main()
