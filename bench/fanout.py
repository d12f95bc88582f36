"""How long the subscriber fan-out takes: expanding an incident update into delivery rows,
and sending them to a loopback stand-in (SendGrid and webhooks). Reported, never asserted.

    python -m bench.fanout [subscribers] [database url]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from cli.wiring import build_runtime
from engine import incidents, migrate
from engine.runtime import install
from engine.security import new_token
from engine.tables import incident_updates, subscribers
from tests.subscriptions.conftest import make_site, settings_for
from tests.support import RecordingServer
from workers import fanout
from workers.notify import context


def main(count: int, database_url: str) -> None:
    server = RecordingServer()
    server.server.socket.listen(128)
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"BEACON_DATABASE_URL": database_url} if database_url else {}
        rt = install(build_runtime(settings_for(Path(tmp), server, **extra)))
        migrate.upgrade(rt.store)
        site = make_site(rt)
        with rt.store.begin() as conn:
            conn.execute(
                subscribers.insert(),
                [
                    {
                        "page_id": site.page_id,
                        "channel": "webhook" if n % 5 == 0 else "email",
                        "address": f"{server.url}/hook/{n}"
                        if n % 5 == 0
                        else f"user{n}@example.com",
                        "confirmed": True,
                        "unsubscribe_token": new_token(),
                        "webhook_secret": "whsec_bench",
                    }
                    for n in range(count)
                ],
            )
            incidents.create(
                conn,
                team_id=site.team_id,
                title="API errors",
                impacts={site.service_ids["api"]: "major_outage"},
            )
            update_id = conn.execute(sa.select(sa.func.max(incident_updates.c.id))).scalar_one()
        with rt.store.read() as conn:
            (notice,) = fanout.incident_notices(conn, rt.settings, update_id)
        started = time.perf_counter()
        fanout.expand(rt, notice)
        expanded = time.perf_counter()
        fanout.send_pending(rt, notice, context(rt.settings))
        sent = time.perf_counter()
        rt.close()
    server.close()
    print(f"store: {'postgresql' if database_url else 'sqlite'}, subscribers: {count}")
    print(f"expand: {expanded - started:.2f}s ({count / (expanded - started):.0f}/s)")
    print(f"send:   {sent - expanded:.2f}s ({count / (sent - expanded):.0f}/s)")
    print(f"requests received: {len(server.requests)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, sys.argv[2] if len(sys.argv) > 2 else "")
