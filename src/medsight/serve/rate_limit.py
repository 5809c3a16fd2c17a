"""Per-client rate limiting: a token bucket per API key or user (refilled continuously), so one
client cannot starve the others; a refused request learns how long to wait."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """At most `per_minute` requests per client, with bursts up to `burst` (default: a tenth of
    a minute's allowance, at least 5)."""

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(5, per_minute // 10))
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
