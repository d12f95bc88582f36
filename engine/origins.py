"""Where a config-manageable object comes from, and what its config file last set.

An object's `origin` is the config file that declares it (the absolute path `beacon apply`
was given), or `ui`, `api` or `cli` for one made there. Its `applied` is the file's fields as
`beacon apply` last wrote them (secrets left out), so a later dry run can tell an edit made
in the UI or API since (drift: the store no longer holds what the file set) from a change of
the file. `beacon apply --prune` deletes only objects a config file declared.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from sqlalchemy.engine import Connection

from .tables import (
    alert_sources,
    channels,
    incident_templates,
    maintenance_windows,
    services,
    status_pages,
    teams,
)

UI = "ui"
API = "api"
CLI = "cli"

#: The tables of the kinds a config file declares, by the file's name of the kind.
TABLES = {
    "teams": teams,
    "services": services,
    "channels": channels,
    "alert_sources": alert_sources,
    "incident_templates": incident_templates,
    "maintenance_windows": maintenance_windows,
    "status_pages": status_pages,
}


def of_actor(actor: str | None) -> str | None:
    """The origin of an object made by `actor`: `user:…` in the UI, `api-key:…` over the
    API, `apply:<file>` by a config file (which `beacon apply` then records with its whole
    path, `record`), anything else the CLI."""
    if actor is None:
        return None
    prefix, _, rest = actor.partition(":")
    if prefix == "apply" and rest:
        return rest
    return {"user": UI, "api-key": API}.get(prefix, CLI)


def from_config(origin: str | None) -> TypeGuard[str]:
    """Whether `origin` names a config file (not the UI, the API, the CLI, or unknown)."""
    return origin is not None and origin not in (UI, API, CLI)


def record(
    conn: Connection, kind: str, row_id: int, *, origin: str, applied: dict[str, Any]
) -> None:
    """Mark an object as declared by the config file `origin`, which set `applied`. Not an
    audited change: the object's fields are written (and audited) by its own module."""
    table = TABLES[kind]
    conn.execute(table.update().where(table.c.id == row_id).values(origin=origin, applied=applied))
