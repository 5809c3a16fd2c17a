"""The service database: SQLAlchemy 2 tables, Alembic migrations shipped in the package, `Store`."""

from medsight.serve.db.audit import AuditReport
from medsight.serve.db.store import KeyInfo, Store, User

__all__ = ["AuditReport", "KeyInfo", "Store", "User"]
