"""Row helpers shared by the admin API's team-owned objects."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.errors import NotFoundError
from engine.tables import services, teams
from pages.errors import FieldErrors

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
    if row is None:
        raise NotFoundError(f"no {what} {row_id}")
    ctx.check(conn, [row.team_id], f"{what} {row_id}")
    return row


def service_ids(
    conn: Connection, team_ids: Sequence[int], refs: Sequence[int | str], field: str
) -> list[int]:
    """Services named by id (a number) or by key (a string) as ids, in order.

    A key is looked up in `team_ids`; one that none of them has, or that several of them
    have (a page shared by two teams), is a 422 on `field` that says so. Ids pass through:
    the caller checks they belong to the team, as it did before keys were accepted.
    """
    keys = sorted({r for r in refs if isinstance(r, str)})
    found: dict[str, list[int]] = {}
    if keys:
        rows = conn.execute(
            sa.select(services.c.key, services.c.id).where(
                services.c.team_id.in_(list(team_ids)), services.c.key.in_(keys)
            )
        )
        for key, id_ in rows:
            found.setdefault(key, []).append(int(id_))
    out: list[int] = []
    for ref in refs:
        if not isinstance(ref, str):
            out.append(ref)
            continue
        matches = found.get(ref, [])
        if len(matches) != 1:
            message = (
                f"no service with key {ref!r} in this team"
                if not matches
                else f"several teams have a service with key {ref!r}: give its id"
            )
            raise FieldErrors([{"field": field, "message": message}])
        out.append(matches[0])
    return out


#: A service id as text: what `schemas.Id` allows. Other digit strings (a leading zero, more
#: digits than an id has) are service keys, which may be all digits.
_ID_TEXT = re.compile(r"[1-9][0-9]{0,9}")


def impact_ids(
    conn: Connection, team_ids: Sequence[int], impacts: Mapping[str, Any] | None
) -> dict[int, Any] | None:
    """An `impacts` map keyed by service id or key (JSON object keys are strings: an id's
    digits, as this map always took, else a key) as one keyed by id."""
    if impacts is None:
        return None
    refs: list[int | str] = [int(k) if _ID_TEXT.fullmatch(k) else k for k in impacts]
    ids = service_ids(conn, team_ids, refs, "impacts")
    if len(set(ids)) != len(ids):
        raise FieldErrors([{"field": "impacts", "message": "a service is named twice"}])
    return dict(zip(ids, impacts.values(), strict=True))
