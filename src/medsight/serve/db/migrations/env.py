"""Alembic environment for the service database: runs on the connection `Store.open` passes in."""

from __future__ import annotations

from alembic import context

from medsight.serve.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("medsight migrations run through medsight.serve.db.migrate.upgrade "
                       "(or Store.open), which passes the connection in config.attributes")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
