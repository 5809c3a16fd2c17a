"""The database engine: which URL (argument, MEDSIGHT_DATABASE_URL, or SQLite in the data folder)
and how connections are set up (SQLite: WAL, synchronous=FULL, foreign keys, busy timeout).

SQLite write transactions start with BEGIN IMMEDIATE (taking the write lock before the first read),
so a read-then-insert such as an audit append can never interleave with another process's; reads
use a plain deferred BEGIN and run beside writers under WAL.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from medsight.errors import InvalidConfig

__all__ = ["DATABASE_URL_ENV", "WRITE_OPTION", "display_url", "make_engine", "resolve_url"]

DATABASE_URL_ENV = "MEDSIGHT_DATABASE_URL"
DB_FILE = "medsight.db"
WRITE_OPTION = "medsight_write"  # execution option marking the engine used for write transactions
SQLITE_BUSY_TIMEOUT_MS = 30_000


def resolve_url(data_dir: Path, url: str | None = None) -> URL:
    """`url`, else $MEDSIGHT_DATABASE_URL, else sqlite:///{data_dir}/medsight.db; checked and normalised."""
    text = url or os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{Path(data_dir).resolve() / DB_FILE}"
    try:
        parsed = make_url(text)
    except ArgumentError as exc:
        raise InvalidConfig(f"cannot parse the database URL {text!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":  # the short scheme some hosting tools print
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "postgresql" and parsed.drivername != "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the one PostgreSQL driver installed
    elif backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise InvalidConfig("an in-memory SQLite database would lose every record on restart; "
                                "give a file, e.g. sqlite:////var/lib/medsight/medsight.db")
    elif backend != "postgresql":
        raise InvalidConfig(f"unsupported database {backend!r} in {display_url(parsed)}: "
                            "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB")
    return parsed


def display_url(url: URL | str) -> str:
    """The URL with its password masked, fit for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: URL) -> Engine:
    """An Engine for `url`, its SQLite connections configured for durability and concurrency."""
    if url.get_backend_name() == "sqlite":
        _private_file(Path(url.database))
        engine = create_engine(url, pool_size=8, max_overflow=24, pool_timeout=60,
                               connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=8, max_overflow=24, pool_timeout=60, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGIN handling off: `_on_begin` emits it
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _use_wal(cur)
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _use_wal(cur) -> None:
    """Switch the file to WAL (persistent, so once per file). Changing the journal mode does not wait
    on the busy handler, so two processes opening a new file at once retry here instead of failing."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _private_file(path: Path) -> None:
    """Create the SQLite file 0600 (in a 0700 folder when that is new) before SQLite does: its WAL
    and shared-memory files copy the database file's permissions."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
