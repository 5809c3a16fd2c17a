"""The local app's mode of the service (`medsight app`): one person on their own machine, no
accounts. The licence (or `--allow-unsigned`) is the entitlement, checked at start and before each
prediction; the browser is let in once by a secret link, and only requests naming 127.0.0.1 or
localhost as their Host are served (no DNS rebinding from a web page)."""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from medsight.deploy.entitlement import Entitlement, record_use

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
LOCAL_SESSION_HOURS = 24 * 365  # the app's own browser; the link lets it in again


@dataclass
class LocalMode:
    """What the local app adds to a service: the entitlement and the browser's entry token."""

    entitlement: Entitlement
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def user_name(self) -> str:
        lic = self.entitlement.licence
        return lic.user if lic is not None else "local"

    def admits(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())

    def check(self) -> None:
        """Before each prediction: the licence still holds (expiry, clock); `LicenceError`."""
        self.entitlement.still_valid()

    def used(self) -> None:
        record_use(self.entitlement)


def host_allowed(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request's Host header names this machine's loopback."""
    for name, value in headers:
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return host in LOCAL_HOSTS
    return False


def result_line(view: dict[str, Any]) -> bytes:
    """One prediction as a line of the local folder's results.jsonl."""
    keep = ("id", "created", "label", "probabilities", "confidence", "threshold", "warnings",
            "model", "input")
    return (json.dumps({k: view.get(k) for k in keep}, sort_keys=True) + "\n").encode("utf-8")


__all__ = ["LOCAL_HOSTS", "LocalMode", "host_allowed", "result_line"]
