"""What the write functions of `engine/<object>.py` share: audit rows, page layouts, the
outbox signal that pages changed, and small row helpers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import origins, outbox
from .errors import ConflictError, NotFoundError, ValidationError
from .status import PAGES_DIRTY
from .tables import (
    audit_log,
    page_groups,
    page_services,
    services,
    utcnow,
)


def audit(
    conn: Connection,
    actor: str,
    action: str,
    kind: str,
    key: str,
    *,
    team_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record who changed what (every change writes one row)."""
    conn.execute(
        audit_log.insert().values(
            actor=actor[:320],
            action=action,
            object_kind=kind,
            object_key=key[:200],
            team_id=team_id,
            detail=dict(detail or {}),
        )
    )


def created(
    conn: Connection,
    table: sa.Table,
    row_id: int,
    actor: str,
    kind: str,
    key: str,
    *,
    team_id: int | None,
) -> None:
    """Record the creation of a config-manageable object: its origin (who made it, from
    the actor: `engine.origins`) and the audit row."""
    conn.execute(table.update().where(table.c.id == row_id).values(origin=origins.of_actor(actor)))
    audit(conn, actor, "create", kind, key, team_id=team_id)


def insert(conn: Connection, table: sa.Table, values: Mapping[str, Any]) -> int:
    """Insert one row; returns its id."""
    inserted = conn.execute(table.insert().values(**values)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def update(conn: Connection, table: sa.Table, row_id: int, values: Mapping[str, Any]) -> None:
    """Update one row by id, stamping `updated_at` where the table has one."""
    if "updated_at" in table.c:
        values = {**values, "updated_at": utcnow()}
    conn.execute(table.update().where(table.c.id == row_id).values(**values))


def row(conn: Connection, table: sa.Table, row_id: int, what: str) -> Any:
    """The row with id `row_id`, or `NotFoundError` naming `what`."""
    found = conn.execute(sa.select(table).where(table.c.id == row_id)).first()
    if found is None:
        raise NotFoundError(f"no {what} {row_id}")
    return found


def key_free(conn: Connection, table: sa.Table, team_id: int, key: str, what: str) -> None:
    """`ConflictError` unless no `what` of the team has `key` (keys are unique per team)."""
    found = conn.execute(
        sa.select(table.c.id).where(table.c.team_id == team_id, table.c.key == key)
    ).first()
    if found:
        raise ConflictError(f"a {what} with key {key!r} exists in this team")


def check_ids(conn: Connection, table: sa.Table, ids: Sequence[int], what: str, field: str) -> None:
    """`ValidationError` on `field` unless every id names a row of `table`."""
    found = set(conn.execute(sa.select(table.c.id).where(table.c.id.in_(list(ids)))).scalars())
    if missing := [i for i in ids if i not in found]:
        raise ValidationError(f"no {what} {missing[0]}", field=field)


def replace_links(
    conn: Connection,
    owner: sa.Column[Any],
    owner_id: int,
    other: sa.Column[Any],
    ids: Sequence[int],
    *,
    ordered: bool = False,
) -> None:
    """Make the link table of `owner` and `other` link `owner_id` to exactly `ids` (in
    order, in a `position` column, when `ordered`)."""
    table = owner.table
    conn.execute(table.delete().where(owner == owner_id))
    rows = [
        {owner.name: owner_id, other.name: i, **({"position": n} if ordered else {})}
        for n, i in enumerate(dict.fromkeys(ids))
    ]
    if rows:
        conn.execute(table.insert(), rows)


def pages_dirty(
    conn: Connection,
    *,
    page_ids: Iterable[int] = (),
    service_ids: Iterable[int] = (),
    window_ids: Iterable[int] = (),
    incident_ids: Iterable[int] = (),
) -> None:
    """Ask the renderers to redraw the pages (or the pages showing these objects)."""
    payload: dict[str, list[int]] = {}
    for name, ids in (
        ("page_ids", page_ids),
        ("service_ids", service_ids),
        ("window_ids", window_ids),
        ("incident_ids", incident_ids),
    ):
        if found := sorted(set(ids)):
            payload[name] = found
    if payload:
        outbox.emit(conn, PAGES_DIRTY, payload)


def sync_page_layout(conn: Connection, page_id: int, service_ids: Sequence[int]) -> bool:
    """Make the page show `service_ids` in this order, grouped by each service's group.

    Rows are updated in place: a component keeps its `public_id` (the Statuspage component
    id subscribers and API clients hold) for as long as the service stays on the page.
    Returns true when anything changed.
    """
    changed = False
    group_of = dict(
        conn.execute(
            sa.select(services.c.id, services.c.group_name).where(services.c.id.in_(service_ids))
        ).all()
    )
    wanted_groups: list[str] = []
    for sid in service_ids:
        name = group_of.get(sid)
        if name and name not in wanted_groups:
            wanted_groups.append(name)
    groups = {
        row.name: row
        for row in conn.execute(sa.select(page_groups).where(page_groups.c.page_id == page_id))
    }
    group_ids: dict[str, int] = {}
    for position, name in enumerate(wanted_groups):
        row = groups.get(name)
        if row is None:
            inserted = conn.execute(
                page_groups.insert().values(page_id=page_id, name=name, position=position)
            ).inserted_primary_key
            assert inserted is not None
            group_ids[name] = int(inserted[0])
            changed = True
        else:
            group_ids[name] = row.id
            if row.position != position:
                conn.execute(
                    page_groups.update()
                    .where(page_groups.c.id == row.id)
                    .values(position=position, updated_at=utcnow())
                )
                changed = True

    existing = {
        row.service_id: row
        for row in conn.execute(sa.select(page_services).where(page_services.c.page_id == page_id))
    }
    for position, sid in enumerate(service_ids):
        name = group_of.get(sid)
        group_id = group_ids.get(name) if name else None
        row = existing.pop(sid, None)
        if row is None:
            conn.execute(
                page_services.insert().values(
                    page_id=page_id, service_id=sid, group_id=group_id, position=position
                )
            )
            changed = True
        elif row.group_id != group_id or row.position != position:
            conn.execute(
                page_services.update()
                .where(page_services.c.id == row.id)
                .values(group_id=group_id, position=position, updated_at=utcnow())
            )
            changed = True
    if existing:
        conn.execute(
            page_services.delete().where(page_services.c.id.in_([r.id for r in existing.values()]))
        )
        changed = True
    unused = [row.id for name, row in groups.items() if name not in group_ids]
    if unused:
        conn.execute(page_groups.delete().where(page_groups.c.id.in_(unused)))
        changed = True
    return changed


def page_service_ids(conn: Connection, page_id: int) -> list[int]:
    """The services a page shows, in order."""
    return list(
        conn.execute(
            sa.select(page_services.c.service_id)
            .where(page_services.c.page_id == page_id)
            .order_by(page_services.c.position, page_services.c.id)
        ).scalars()
    )


def relayout_pages_of(conn: Connection, service_ids: Iterable[int]) -> list[int]:
    """Re-group every page showing one of `service_ids` (after a service's group changed);
    returns the ids of the pages that changed."""
    ids = sorted(set(service_ids))
    if not ids:
        return []
    page_ids = sorted(
        set(
            conn.execute(
                sa.select(page_services.c.page_id).where(page_services.c.service_id.in_(ids))
            ).scalars()
        )
    )
    return [pid for pid in page_ids if sync_page_layout(conn, pid, page_service_ids(conn, pid))]
