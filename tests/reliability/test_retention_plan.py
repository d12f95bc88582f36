"""The retention purge finds old finished deliveries through their (status, updated_at)
index (migration 0014), on SQLite and PostgreSQL, as each database's planner says: the
deliveries table holds every notification of the retention period, and a purge that
read it all would take longer each day."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from engine import retention
from engine.tables import deliveries, status_pages, subscribers, teams, utcnow

NOW = utcnow()
INDEX = "ix_deliveries_status_updated"
ROWS = 20_000


def _fill(store) -> None:
    """A table as the purge meets it: 91 days of deliveries, oldest first, mostly sent,
    a few pending or failed; the purge at 90 days takes the first day's."""
    with store.begin() as conn:
        team = conn.execute(teams.insert().values(key="t", name="T")).inserted_primary_key[0]
        page = conn.execute(
            status_pages.insert().values(team_id=team, slug="acme", name="Acme")
        ).inserted_primary_key[0]
        subscriber = conn.execute(
            subscribers.insert().values(
                page_id=page,
                channel="email",
                address="ann@example.com",
                confirmed=True,
            )
        ).inserted_primary_key[0]
        step = timedelta(days=91) / ROWS
        statuses = ["sent"] * 45 + ["failed", "superseded", "unchanged", "pending", "sending"]
        conn.execute(
            deliveries.insert(),
            [
                {
                    "dedup_key": f"d{n}",
                    "subscriber_id": subscriber,
                    "kind": "email",
                    "message": {},
                    "status": statuses[n % len(statuses)],
                    "created_at": NOW - timedelta(days=91) + n * step,
                    "updated_at": NOW - timedelta(days=91) + n * step,
                }
                for n in range(ROWS)
            ],
        )
        conn.execute(sa.text("ANALYZE"))


def _purge_statements(store) -> list[tuple[str, Any]]:
    """The SELECTs the delivery purge runs, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "deliveries" in statement:
            seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        purged = retention.purge_deliveries(store, 90, NOW)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    assert purged > 0
    return seen


def _plan(store, statement: str, parameters: Any) -> str:
    explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
    with store.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(explain + statement, parameters)
        return "\n".join(" ".join(str(v) for v in row) for row in cursor.fetchall())


def test_the_delivery_purge_reads_by_its_index(store):
    _fill(store)
    statements = _purge_statements(store)
    assert statements
    for statement, parameters in statements:
        plan = _plan(store, statement, parameters)
        assert INDEX in plan, plan
