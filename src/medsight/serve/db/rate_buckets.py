"""Token buckets in the database, so service replicas share one allowance per client.

One `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` per request: PostgreSQL locks the client's
row for the statement, refills its tokens for the time since the last request (by the database's
clock, the same for every replica), takes one if there is one and says whether it did. Two
replicas updating the same bucket at once run one after the other, never on the same old value.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

__all__ = ["peek_tokens", "prune_idle", "take_token"]

_ELAPSED = "GREATEST(0, EXTRACT(EPOCH FROM statement_timestamp() - b.updated))"
_AVAILABLE = f"LEAST(CAST(:burst AS double precision), b.tokens + {_ELAPSED} * :rate)"
_TAKE = text(f"""
INSERT INTO rate_buckets AS b (client, tokens, updated, allowed)
VALUES (:client, CAST(:burst AS double precision) - 1, statement_timestamp(), true)
ON CONFLICT (client) DO UPDATE SET
    tokens = CASE WHEN {_AVAILABLE} >= 1 THEN {_AVAILABLE} - 1 ELSE {_AVAILABLE} END,
    allowed = {_AVAILABLE} >= 1,
    updated = GREATEST(b.updated, statement_timestamp())
RETURNING tokens, allowed
""")
_PEEK = text(f"SELECT {_AVAILABLE} FROM rate_buckets AS b WHERE b.client = :client")
_PRUNE = text("DELETE FROM rate_buckets WHERE updated < statement_timestamp() - make_interval(secs => "
              "CASE WHEN starts_with(client, :prefix) THEN GREATEST(:idle, :longer) ELSE :idle END)")


def take_token(conn: Connection, client: str, rate: float, burst: float) -> float:
    """Take one token from `client`'s bucket (refilled at `rate` per second up to `burst`, full
    when new): 0.0 when taken, else the seconds until one is there. PostgreSQL only."""
    if conn.dialect.name != "postgresql":
        raise NotImplementedError("shared rate buckets need PostgreSQL (one SQLite-backed process "
                                  "uses the in-process limiter)")
    tokens, allowed = conn.execute(_TAKE, {"client": client, "rate": rate, "burst": burst}).one()
    return 0.0 if allowed else (1.0 - tokens) / rate


def peek_tokens(conn: Connection, client: str, rate: float, burst: float) -> float:
    """The tokens in `client`'s bucket now (`burst` when it has none), none taken."""
    if conn.dialect.name != "postgresql":
        raise NotImplementedError("shared rate buckets need PostgreSQL")
    tokens = conn.execute(_PEEK, {"client": client, "rate": rate, "burst": burst}).scalar()
    return float(burst) if tokens is None else float(tokens)


def prune_idle(conn: Connection, idle_s: float, prefix: str = "", longer_s: float = 0.0) -> int:
    """Delete the buckets untouched for `idle_s` seconds (burst / rate: full again, the same as
    no row), those of clients starting with `prefix` only after `longer_s` if that
    is longer (they fill more slowly); how many. PostgreSQL only."""
    return conn.execute(_PRUNE, {"idle": float(idle_s), "prefix": prefix,
                                 "longer": float(longer_s)}).rowcount
