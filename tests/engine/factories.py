"""Small helpers that put domain rows in a store for tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from engine.tables import services, teams


def team(conn: Connection, key: str = "platform", **values: Any) -> int:
    inserted = conn.execute(
        teams.insert().values(key=key, name=key.title(), **values)
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def service(conn: Connection, team_id: int, key: str, **values: Any) -> int:
    values.setdefault("name", key.upper())
    inserted = conn.execute(
        services.insert().values(team_id=team_id, key=key, **values)
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])
