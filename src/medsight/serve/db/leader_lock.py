"""`LeaderLock`: one holder at a time among every process using a PostgreSQL database (a session
advisory lock on a connection of its own), so a duty such as the PACS watcher runs on one replica
and another takes it over when that one stops or dies (its session ends, the server frees the lock).
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["LeaderLock"]

log = logging.getLogger(__name__)


class LeaderLock:
    """The advisory lock named `name` on `engine`'s PostgreSQL database, tried without waiting."""

    def __init__(self, engine: Engine, name: str) -> None:
        digest = hashlib.sha256(f"medsight leader {name}".encode()).digest()
        self.name = name
        self.key = int.from_bytes(digest[:8], "big", signed=True)  # pg advisory keys are bigint
        self._engine = engine
        self._conn: Connection | None = None

    def held(self) -> bool:
        """Whether this process holds the lock now. A held lock is kept while its connection
        answers; otherwise (not yet taken, or its connection lost, and the lock with it) it is
        tried once more, without waiting: False while another process holds it or the database
        cannot be reached."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError as exc:
                log.warning("lost the %s lock with its database connection: %s", self.name, exc)
                self._drop()
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            log.warning("cannot take the %s lock: the database is unreachable: %s", self.name, exc)
            return False
        try:
            taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                      {"k": self.key}).scalar())
        except SQLAlchemyError as exc:
            log.warning("cannot take the %s lock: %s", self.name, exc)
            taken = False
        if taken:
            self._conn = conn  # idle, in no transaction, for as long as the lock is held
        else:
            conn.close()
        return taken

    def release(self) -> None:
        """Free the lock (if held) so another process may take it at once."""
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        except SQLAlchemyError:
            pass  # the connection is gone, and the lock with it
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except SQLAlchemyError:
                pass
