"""Schema migrations (Alembic): run by `beacon db upgrade`, and by embedded `beacon serve`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import Store

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(store: Store, revision: str = "head") -> None:
    """Bring the store's schema up to `revision` (the newest by default)."""
    _run(store, lambda config: command.upgrade(config, revision))


def downgrade(store: Store, revision: str) -> None:
    """Take the store's schema back to `revision` (for tests of a migration's data step)."""
    _run(store, lambda config: command.downgrade(config, revision))


def _run(store: Store, step: Callable[[Config], None]) -> None:
    config = _config()
    if store.dialect != "sqlite":
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            step(config)
        return
    # SQLite changes a table by rebuilding it (create, copy, drop, rename: Alembic's batch
    # mode), and dropping a table that others reference would run their ON DELETE CASCADE.
    # So foreign keys are off while migrating, which SQLite only allows outside a
    # transaction; the references are checked before the commit instead.
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                step(config)
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
                if broken is not None:
                    raise RuntimeError(f"migration broke a foreign key: {tuple(broken)}")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def is_current(store: Store) -> bool:
    return current_revision(store) == head_revision()


def autogenerate(store: Store, message: str) -> None:
    """Write a new migration for the difference between `engine.tables` and the store.
    A developer's tool (`python -m engine.migrate "message"`), never run in production."""
    config = _config()
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":  # pragma: no cover - developer tool
    import sys
    import tempfile

    from .settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(
            __import__("engine.db", fromlist=["sqlite_engine"]).sqlite_engine(
                f"sqlite:///{tmp}/gen.db"
            )
        )
        upgrade(store)
        autogenerate(store, sys.argv[1])
        del Settings
