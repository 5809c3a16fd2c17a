"""Per-client rate limiting: a token bucket per API key or user (refilled continuously), so one
client cannot starve the others; a refused request learns how long to wait.

Which limiter runs: on PostgreSQL, where several `medsight serve` replicas may share the database,
`SharedRateLimiter` keeps the buckets in it (one atomic statement per request), so a client gets
its allowance once across all replicas, not once per replica. On SQLite (one service process per
data folder) `RateLimiter` keeps them in the process, costing no database write per request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from medsight.serve.db.store import Store

__all__ = ["Limiter", "RateLimiter", "SharedRateLimiter", "default_burst", "rate_limiter"]

log = logging.getLogger("medsight.serve")


class Limiter(Protocol):
    def check(self, client: str) -> float:
        """0.0 when the request may go on (and is counted), else the seconds to wait."""


def default_burst(per_minute: int) -> float:
    """The burst allowed when none is given: a tenth of a minute's allowance, at least 5."""
    return float(max(5, per_minute // 10))


class RateLimiter:
    """At most `per_minute` requests per client, with bursts up to `burst` (default:
    `default_burst`), counted in this process."""

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst) if burst is not None else default_burst(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> float:
        """0.0 when the request may go on (and is counted), else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


class SharedRateLimiter:
    """`RateLimiter`'s buckets kept in the service database, shared by every replica using it;
    buckets idle long enough to be full again are deleted every `PRUNE_EVERY_S`."""

    PRUNE_EVERY_S = 600.0

    def __init__(self, store: Store, per_minute: int, burst: int | None = None) -> None:
        self.store = store
        self.rate = per_minute / 60.0
        self.burst = float(burst) if burst is not None else default_burst(per_minute)
        self._pruned = time.monotonic()

    def check(self, client: str) -> float:
        """0.0 when the request may go on (and is counted), else the seconds to wait. A database
        error lets the request go on (logged): the limit protects the service, it does not
        decide who may use it."""
        try:
            if time.monotonic() - self._pruned > self.PRUNE_EVERY_S:
                self._pruned = time.monotonic()
                self.store.prune_rate_buckets(self.burst / self.rate)
            return self.store.take_rate_token(client, self.rate, self.burst)
        except SQLAlchemyError as exc:
            log.warning("rate limit of %s not checked (database error: %s)", client,
                        str(getattr(exc, "orig", exc)).strip().splitlines()[0])
            return 0.0


def rate_limiter(store: Store, per_minute: int) -> Limiter:
    """The limiter for this store: shared through the database on PostgreSQL, else in-process."""
    return SharedRateLimiter(store, per_minute) if store.shared else RateLimiter(per_minute)
