"""`PacsState`: the PACS watcher's jobs and predicted instances in the service database (the
`WatchState` of `medsight.pacs.watch_state`), on a `Store`'s transactions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medsight.pacs.watch_state import Job
from medsight.serve.db.audit import append_entries
from medsight.serve.db.store import Store
from medsight.serve.db.tables import PacsInstanceRow, PacsSeriesRow, PredictionRow

__all__ = ["PacsState"]


def _job(row: PacsSeriesRow) -> Job:
    return Job(id=row.id, pacs=row.pacs, model_name=row.model_name, study_uid=row.study_uid,
               series_uid=row.series_uid, status=row.status, attempts=row.attempts,
               instances=row.instances, last_error=row.last_error, results=list(row.results or []))


def _result(row: PredictionRow) -> dict[str, Any]:
    """A stored prediction record in `Prediction.to_dict` form."""
    out: dict[str, Any] = {
        "path": (row.source or {}).get("sop_uid") or "", "label": row.label,
        "probabilities": dict(row.probabilities or {}), "confidence": float(row.confidence),
        "threshold": row.threshold, "warnings": list(row.warnings or []), "input": dict(row.input or {}),
        "model": {"name": row.model_name, "version": row.model_version, "uuid": row.model_uuid}}
    if row.detections:
        out["boxes"], out["counts"] = row.detections.get("boxes"), row.detections.get("counts")
    return out


class PacsState:
    """The watcher's state in `store`'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _row(self, s: Session, pacs: str, series_uid: str, model_name: str) -> PacsSeriesRow | None:
        return s.execute(select(PacsSeriesRow).where(
            PacsSeriesRow.pacs == pacs, PacsSeriesRow.series_uid == series_uid,
            PacsSeriesRow.model_name == model_name)).scalar_one_or_none()

    def _upsert(self, pacs: str, model_name: str, model_uuid: str | None, study_uid: str,
                series_uid: str, instances: int, attempt: bool, **change: Any) -> Job:
        now = datetime.now(UTC)
        with self.store._tx() as s:
            row = self._row(s, pacs, series_uid, model_name)
            if row is None:
                row = PacsSeriesRow(pacs=pacs, model_name=model_name, study_uid=study_uid,
                                    series_uid=series_uid, attempts=0, results=[], created=now)
                s.add(row)
            row.model_uuid, row.instances, row.updated = model_uuid, instances, now
            row.attempts += attempt
            for key, value in change.items():
                setattr(row, key, value)
            s.flush()
            return _job(row)

    def get(self, pacs: str, series_uid: str, model_name: str) -> Job | None:
        with self.store._read() as s:
            row = self._row(s, pacs, series_uid, model_name)
            return _job(row) if row else None

    def claim(self, pacs: str, model_name: str, model_uuid: str | None, study_uid: str,
              series_uid: str, instances: int) -> Job:
        return self._upsert(pacs, model_name, model_uuid, study_uid, series_uid, instances,
                            attempt=True, status="running")

    def skip(self, pacs: str, model_name: str, model_uuid: str | None, study_uid: str,
             series_uid: str, instances: int, reason: str) -> Job:
        return self._upsert(pacs, model_name, model_uuid, study_uid, series_uid, instances,
                            attempt=False, status="skipped", last_error=reason)

    def predicted(self, job_id: int) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """The instances recorded, after adopting the job's orphans: predictions stored from this
        series (their `source` says so) by a watcher killed before it recorded them."""
        with self.store._tx() as s:
            job = s.get(PacsSeriesRow, job_id)
            rows = s.execute(select(PacsInstanceRow).where(PacsInstanceRow.series_id == job_id)
                             ).scalars().all()
            found = {r.sop_uid: (r.prediction_id, dict(r.result)) for r in rows}
            known = {pid for pid, _ in found.values()}
            for pred in s.execute(select(PredictionRow).where(
                    PredictionRow.model_name == job.model_name, PredictionRow.created >= job.created,
                    PredictionRow.source.is_not(None))).scalars():
                src = pred.source or {}
                if (pred.id in known or src.get("pacs") != job.pacs
                        or src.get("series_uid") != job.series_uid):
                    continue
                sop = src.get("sop_uid") or job.series_uid  # a volume is keyed by its series
                if sop in found:
                    continue
                result = _result(pred)
                s.add(PacsInstanceRow(series_id=job_id, sop_uid=sop, prediction_id=pred.id,
                                      result=result, created=datetime.now(UTC)))
                found[sop] = (pred.id, result)
            return found

    def record(self, job_id: int, sop_uid: str, prediction_id: str | None,
               result: dict[str, Any]) -> None:
        with self.store._tx() as s:
            s.add(PacsInstanceRow(series_id=job_id, sop_uid=sop_uid, prediction_id=prediction_id,
                                  result=result, created=datetime.now(UTC)))

    def finish(self, job_id: int, results: list[dict[str, str]], audit: dict[str, Any]) -> None:
        """Done, the results listed in the job and in each prediction's `source`, one audit entry."""
        with self.store._tx(audited=True) as s:
            row = s.get(PacsSeriesRow, job_id)
            row.status, row.results, row.last_error = "done", results, None
            row.updated = datetime.now(UTC)
            pids = s.execute(select(PacsInstanceRow.prediction_id).where(
                PacsInstanceRow.series_id == job_id)).scalars().all()
            for pred in s.execute(select(PredictionRow).where(
                    PredictionRow.id.in_([p for p in pids if p]))).scalars():
                pred.source = {**(pred.source or {}), "results": results}
            append_entries(s, [audit])

    def fail(self, job_id: int, error: str) -> None:
        with self.store._tx() as s:
            row = s.get(PacsSeriesRow, job_id)
            row.status, row.last_error, row.updated = "failed", error, datetime.now(UTC)

    def jobs(self, status: str | None = None) -> list[Job]:
        q = select(PacsSeriesRow).order_by(PacsSeriesRow.updated.desc(), PacsSeriesRow.id.desc())
        if status is not None:
            q = q.where(PacsSeriesRow.status == status)
        with self.store._read() as s:
            return [_job(r) for r in s.execute(q).scalars()]
