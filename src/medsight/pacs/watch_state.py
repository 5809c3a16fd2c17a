"""`WatchState`: what the PACS watcher remembers between polls and restarts (one job per PACS,
series and model; each instance predicted), as a protocol the service database implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Job", "WatchState"]


@dataclass(frozen=True)
class Job:
    """One (PACS, series, model) job as stored."""

    id: int
    pacs: str
    model_name: str
    study_uid: str
    series_uid: str
    status: str  # pending | running | done | failed | skipped
    attempts: int
    instances: int | None = None
    last_error: str | None = None
    results: list[dict[str, str]] = field(default_factory=list)


class WatchState(Protocol):
    """The watcher's memory; every call is its own committed transaction."""

    def get(self, pacs: str, series_uid: str, model_name: str) -> Job | None:
        """The job of this series and model, or None when never seen."""

    def claim(self, pacs: str, model_name: str, model_uuid: str | None, study_uid: str,
              series_uid: str, instances: int) -> Job:
        """Create or restart the job as `running` with one more attempt, and return it."""

    def skip(self, pacs: str, model_name: str, model_uuid: str | None, study_uid: str,
             series_uid: str, instances: int, reason: str) -> Job:
        """Record that the model's rules exclude the series (never looked at again)."""

    def predicted(self, job_id: int) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """The instances already predicted: SOP UID -> (prediction id, prediction dict)."""

    def record(self, job_id: int, sop_uid: str, prediction_id: str | None,
               result: dict[str, Any]) -> None:
        """Remember one instance's prediction (committed at once)."""

    def finish(self, job_id: int, results: list[dict[str, str]], audit: dict[str, Any]) -> None:
        """Mark the job done with the instances written back, and append `audit` to the chain."""

    def fail(self, job_id: int, error: str) -> None:
        """Mark the job failed with its reason."""

    def jobs(self, status: str | None = None) -> list[Job]:
        """Every job (or those in `status`), newest first."""
