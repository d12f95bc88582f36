"""Row helpers shared by the admin API's team-owned objects."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.errors import ConflictError, NotFoundError
from engine.tables import teams

from .api import Ctx


def with_team(table: sa.Table) -> Any:
    return sa.select(table, teams.c.key.label("team_key")).join(
        teams, teams.c.id == table.c.team_id
    )


def team_row(
    ctx: Ctx, conn: Connection, table: sa.Table, what: str, row_id: int | None = None
) -> Any:
    row_id = row_id or ctx.id
    row = conn.execute(with_team(table).where(table.c.id == row_id)).first()
    if row is None or not ctx.who.can_see_team(row.team_id):
        raise NotFoundError(f"no {what} {row_id}")
    return row


def ensure_unique(conn: Connection, table: sa.Table, team_id: int, key: str, what: str) -> None:
    found = conn.execute(
        sa.select(table.c.id).where(table.c.team_id == team_id, table.c.key == key)
    ).first()
    if found:
        raise ConflictError(f"a {what} with key {key!r} exists in this team")


def insert(conn: Connection, table: sa.Table, values: dict[str, Any]) -> int:
    inserted = conn.execute(table.insert().values(**values)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])
