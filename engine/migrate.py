"""Schema migrations (Alembic): run by `beacon db upgrade`, and by embedded `beacon serve`."""

from __future__ import annotations

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
    config = _config()
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


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
