"""`ServeSettings`: every knob of the service in one validated object (the CLI flags fill it)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from medsight.errors import InvalidConfig

DATABASE_URL_ENV = "MEDSIGHT_DATABASE_URL"
SETTINGS_ENV = "MEDSIGHT_SERVE_SETTINGS"  # how `medsight serve --processes N` hands them to its workers

if TYPE_CHECKING:
    from medsight.serve.local_mode import LocalMode


@dataclass
class ServeSettings:
    """Where the service keeps its data, which bundles it serves, and its limits.

    `max_batch` / `max_wait_ms` shape dynamic batching; `queue_size` bounds the predictions in
    flight (more are answered 503 with Retry-After); `rate_per_minute` is per API key or user;
    `decode_workers` processes decode uploads under `decode_timeout_s` and `decode_memory_mb`.
    `licence_days`: how long an offline licence (POST /v1/licences) lasts before it must be
    renewed online.
    """

    bundles: list[Path]
    data_dir: Path
    database_url: str | None = None
    max_upload_mb: float = 64.0
    max_pixels: int = 100_000_000
    max_batch: int = 32
    max_wait_ms: float = 5.0
    queue_size: int = 256
    rate_per_minute: int = 600
    decode_workers: int = 2
    decode_timeout_s: float = 30.0
    decode_memory_mb: int = 4096
    session_hours: float = 12.0
    batch_files: int = 32
    local: LocalMode | None = None  # `medsight app`: one local user, the licence as entitlement
    licence_days: float = 30.0
    watch_pacs: Path | None = None  # a PACS watcher configuration (YAML) to run in the service

    def __post_init__(self) -> None:
        self.bundles = [Path(b) for b in self.bundles]
        self.data_dir = Path(self.data_dir)
        if not self.bundles:
            raise InvalidConfig("medsight serve needs at least one --bundle")
        if self.database_url is None:
            self.database_url = os.environ.get(DATABASE_URL_ENV) or None
        for name in ("max_upload_mb", "max_pixels", "max_batch", "queue_size", "rate_per_minute",
                     "decode_workers", "decode_timeout_s", "decode_memory_mb", "session_hours",
                     "batch_files"):
            if getattr(self, name) <= 0:
                raise InvalidConfig(f"{name} must be > 0, got {getattr(self, name)}")
        if not (math.isfinite(self.licence_days) and self.licence_days > 0):
            raise InvalidConfig(f"licence_days must be > 0 (and finite), got {self.licence_days}")
        if self.max_wait_ms < 0:
            raise InvalidConfig(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def to_json(self) -> str:
        """These settings as JSON, for the worker processes of `medsight serve --processes N`
        (which serve no local app: `local` cannot travel)."""
        if self.local is not None:
            raise InvalidConfig("the local app runs in one process; its settings are not shared")
        doc = asdict(self)
        doc.pop("local")
        doc["bundles"] = [str(b) for b in self.bundles]
        doc["data_dir"] = str(self.data_dir)
        doc["watch_pacs"] = None if self.watch_pacs is None else str(self.watch_pacs)
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        """The settings `to_json` wrote (checked again)."""
        doc = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise InvalidConfig(f"unknown service settings {sorted(unknown)}")
        return cls(**{**doc, "watch_pacs": Path(doc["watch_pacs"]) if doc.get("watch_pacs") else None})
