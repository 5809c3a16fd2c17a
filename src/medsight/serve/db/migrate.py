"""Schema migrations: Alembic, run in code on the service's own connection (no alembic.ini).

The revisions ship inside the package (`migrations/versions`). Upgrades run in one transaction
holding the database's write lock (SQLite BEGIN IMMEDIATE, a PostgreSQL advisory lock), so two
processes starting at once migrate one after the other, and a failed upgrade leaves the old schema.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from medsight.serve.db.engine import WRITE_OPTION

__all__ = ["MIGRATIONS", "current_revision", "downgrade", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")
PG_MIGRATE_LOCK_KEY = 0x6D6967726174650A  # "migrate\n" in ASCII


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    return cfg


def _run(engine: Engine, fn, revision: str) -> None:
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATE_LOCK_KEY})
        cfg = _config()
        cfg.attributes["connection"] = conn
        fn(cfg, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` (default: the newest shipped)."""
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision` (tests and emergencies; data in dropped tables is lost)."""
    _run(engine, command.downgrade, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this version of medsight."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head
