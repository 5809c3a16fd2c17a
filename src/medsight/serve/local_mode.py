"""The local app's mode of the service (`medsight app`): one person on their own machine, no
accounts. The licence (or `--allow-unsigned`) is the entitlement, checked at start and before each
prediction; the browser is let in once by a secret link, and only requests naming 127.0.0.1 or
localhost as their Host are served (no DNS rebinding from a web page)."""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.deploy.entitlement import Entitlement, record_use

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
LOCAL_SESSION_HOURS = 24 * 365  # the app's own browser; the link lets it in again
USE_RECORDED_EVERY_S = 60.0  # the licence file's last use: well inside the clock check's 5 min
RESULTS = "results.jsonl"


@dataclass
class LocalMode:
    """What the local app adds to a service: the entitlement and the browser's entry token."""

    entitlement: Entitlement
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _recorded_at: float = field(default=float("-inf"), repr=False)

    @property
    def user_name(self) -> str:
        lic = self.entitlement.licence
        return lic.user if lic is not None else "local"

    def admits(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())

    def check(self) -> None:
        """Before each prediction: the licence still holds (expiry, clock); `LicenceError`."""
        self.entitlement.still_valid()

    def record(self, views: list[dict[str, Any]], folder: Path) -> None:
        """After a batch is stored: its results appended to the folder's results.jsonl, and the
        licence's last use written (at most once a minute, not on every prediction)."""
        with open(folder / RESULTS, "ab") as fh:
            fh.write(b"".join(_result_line(v) for v in views))
        if time.monotonic() - self._recorded_at >= USE_RECORDED_EVERY_S:
            record_use(self.entitlement)
            self._recorded_at = time.monotonic()


def host_allowed(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request's Host header names this machine's loopback."""
    for name, value in headers:
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return host in LOCAL_HOSTS
    return False


def _result_line(view: dict[str, Any]) -> bytes:
    """One prediction as a line of the local folder's results.jsonl."""
    keep = ("id", "created", "label", "probabilities", "confidence", "threshold", "warnings",
            "model", "input")
    return (json.dumps({k: view.get(k) for k in keep}, sort_keys=True) + "\n").encode("utf-8")


__all__ = ["LOCAL_HOSTS", "RESULTS", "LocalMode", "host_allowed"]
