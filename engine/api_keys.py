"""API keys: creating and revoking them (admin API, `beacon apikey create`).

A key is either one team's (responder rights in it) or an admin key. It is shown once, when
it is made; only its SHA-256 is kept, with a short prefix that names it in listings and in
the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from . import crud
from .errors import ValidationError
from .security import new_api_key
from .tables import api_keys, teams, utcnow


@dataclass(frozen=True)
class NewKey:
    """A key just made: `key` is the secret, shown this once."""

    id: int
    key: str
    prefix: str


def create(conn: Connection, *, name: str, team_id: int | None, admin: bool, actor: str) -> NewKey:
    """Make a key for team `team_id`, or an admin key (`admin` and no team)."""
    if (team_id is None) != admin:
        raise ValidationError("an API key is either for one team or an admin key", field="team")
    if team_id is not None:
        crud.row(conn, teams, team_id, "team")
    key, prefix, digest = new_api_key()
    key_id = crud.insert(
        conn,
        api_keys,
        {"name": name, "team_id": team_id, "admin": admin, "prefix": prefix, "key_hash": digest},
    )
    crud.audit(conn, actor, "create", "api key", f"{name} ({prefix})", team_id=team_id)
    return NewKey(key_id, key, prefix)


def revoke(conn: Connection, key_id: int, *, actor: str) -> bool:
    """Revoke a key (it stops working at once); false if it was already revoked."""
    row = crud.row(conn, api_keys, key_id, "API key")
    if row.revoked_at is not None:
        return False
    conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=utcnow()))
    crud.audit(conn, actor, "delete", "api key", f"{row.name} ({row.prefix})", team_id=row.team_id)
    return True


def note_use(conn: Connection, key_id: int, now: datetime) -> None:
    """Record when a key was last used (a hint for its listing, not an audited change)."""
    conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=now))
