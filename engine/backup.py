"""Backups of the embedded store: SQLite's online backup API, while Beacon runs.

SQLite copies the database page by page into the backup; writers may go on meanwhile (a
write during the copy makes it restart the pages that changed), so the file is one
consistent snapshot, as of the end of the copy. It is written beside its name and renamed
over it only once complete and checked (`PRAGMA integrity_check`), so a backup file is
never half a database.

PostgreSQL (scaled mode) is backed up with its own tools: docs/operations.md, "Backups".
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .errors import ConfigError
from .settings import Settings

#: Pages copied per step: between steps writers get the lock back.
PAGES_PER_STEP = 1024


def sqlite_path(settings: Settings) -> Path:
    """The embedded store's file; `ConfigError` in scaled mode (PostgreSQL)."""
    url = settings.effective_database_url
    if not url.startswith("sqlite:///"):
        raise ConfigError(
            "`beacon backup` copies the embedded SQLite store; BEACON_DATABASE_URL names "
            "PostgreSQL: back it up with pg_dump or pg_basebackup (docs/operations.md, "
            '"Backups")'
        )
    return Path(url[len("sqlite:///") :])


def backup(settings: Settings, target: Path) -> int:
    """Copy the embedded store to `target` online; returns its size in bytes."""
    source = sqlite_path(settings)
    if not source.exists():
        raise ConfigError(f"there is no database at {source} to back up")
    if target.resolve() == source.resolve():
        raise ConfigError("the backup cannot be written over the database itself")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        # Made before SQLite opens it, which keeps its mode: a backup holds what the
        # database does (addresses, password hashes), for its maker only, whatever the umask.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with _connect(source) as src, _connect(partial) as dst:
            src.backup(dst, pages=PAGES_PER_STEP)
            # A backup is restored as it is: no WAL beside it to go missing.
            dst.execute("PRAGMA journal_mode=DELETE")
            verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise ConfigError(f"the backup failed its integrity check: {verdict}")
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise ConfigError(f"backup to {target} failed: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"backup to {target} failed: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


class _connect:
    """A sqlite3 connection closed on exit (sqlite3's own context manager only commits)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=30)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
