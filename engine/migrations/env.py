"""Alembic environment: runs Beacon's migrations on the connection `engine.migrate` passes in."""

from __future__ import annotations

from alembic import context

from engine.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `beacon db upgrade` runs migrations
    raise RuntimeError("run migrations through `beacon db upgrade` (engine.migrate.upgrade)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
