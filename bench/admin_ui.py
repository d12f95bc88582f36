"""What an admin web UI page costs beside the admin API answering the same data, in process
(Starlette's TestClient, an embedded SQLite store of its own). Reported, never asserted.

    python -m bench.admin_ui [--services N] [--pages N] [--rounds N]

Seeds one team with N services and pages, signs a responder in through the form, and
prints the median time and the size of each admin page next to the JSON the admin API
gives for the same list (the reference: same store, same handlers, no HTML).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from cli.wiring import build_runtime
from engine import migrate, services, teams
from engine.accounts import create_api_key, create_user
from engine.settings import Settings
from pages.app import create_app

PASSWORD = "correct horse battery staple"


def timed(client: TestClient, path: str, rounds: int, **headers: str) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(path, headers=headers)
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code)
        size = len(answer.content)
    return statistics.median(times) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=60)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"BEACON_DATA_DIR": str(Path(tmp) / "data"), "BEACON_BASE_URL": "http://testserver"}
        rt = build_runtime(Settings.from_env(env))
        migrate.upgrade(rt.store)
        with rt.store.begin() as conn:
            team = teams.create(conn, teams.TeamFields("platform"), actor="bench")
            for n in range(args.services):
                fields = services.ServiceFields(f"svc-{n}", f"Service {n}", group=f"G{n % 5}")
                services.create(conn, team, fields, actor="bench")
        create_user(
            rt.store, "ops@example.test", role="responder", teams=["platform"], password=PASSWORD
        )
        key = create_api_key(rt.store, name="bench", team="platform")
        auth = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(rt), base_url="http://testserver") as client:
            for n in range(args.pages):
                body = {"slug": f"p{n}", "name": f"Page {n}", "services": [f"svc-{n}"]}
                assert client.post("/api/v1/pages", json=body, headers=auth).status_code == 201
            page = client.get("/login").text
            token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            form = {"email": "ops@example.test", "password": PASSWORD, "csrf": token, "next": "/"}
            client.post("/login", data=form)
            rows = [
                ("/admin/pages", "/api/v1/pages"),
                ("/admin/services", "/api/v1/services"),
                ("/admin/pages/new", "/api/v1/services"),
                ("/admin/", "/api/v1/pages"),
            ]
            print(f"{args.services} services, {args.pages} pages, median of {args.rounds}")
            for ui, reference in rows:
                ui_ms, ui_bytes = timed(client, ui, args.rounds)
                api_ms, api_bytes = timed(client, reference, args.rounds, **auth)
                print(
                    f"{ui:22} {ui_ms:7.1f} ms {ui_bytes / 1024:7.1f} KB   "
                    f"reference {reference:18} {api_ms:7.1f} ms {api_bytes / 1024:7.1f} KB"
                )
        rt.close()


if __name__ == "__main__":
    main()
