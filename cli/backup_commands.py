"""`beacon backup FILE`: an online copy of the embedded store (engine/backup.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.backup import backup
from engine.settings import Settings


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    size = backup(settings, Path(args.file))
    print(
        f"backed up {settings.effective_database_url.removeprefix('sqlite:///')} to {args.file} "
        f"({size:,} bytes)"
    )
    print(
        "keep the data directory's secret_key (or BEACON_SECRET_KEY) with it: sessions and "
        "sign-in links are signed with it"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "backup", help="copy the embedded database to FILE while Beacon runs (SQLite)"
    )
    parser.add_argument("file", help="where to write the backup (replaced if it exists)")
    parser.set_defaults(func=cmd_backup)
