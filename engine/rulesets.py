"""Rule set versions in the store (`rule_sets`): which version is in force, and its files.

The rule language is `rules`' business; this module only reads the stored texts, for the
evaluator (`workers.evaluate`) and for explanations (`pages.unmatched`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .tables import rule_sets

# The version in force; its files are read only when a process does not have it yet
# (every evaluate and tick job asks, and the files of 1,000 rules are large).
VERSION_IN_FORCE = (
    sa.select(rule_sets.c.version)
    .where(rule_sets.c.active.is_(True))
    .order_by(rule_sets.c.version.desc())
    .limit(1)
)


def version_in_force(conn: Connection) -> int:
    """The newest active rule set version; 0 when none was ever published."""
    return int(conn.execute(VERSION_IN_FORCE).scalar() or 0)


def stored_files(conn: Connection, version: int) -> dict[str, str] | None:
    """The files (path -> text) of rule set `version`; None for version 0 or a missing one."""
    if not version:
        return None
    files = conn.execute(
        sa.select(rule_sets.c.files).where(rule_sets.c.version == version)
    ).scalar()
    return dict(files) if files else None
