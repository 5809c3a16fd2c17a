"""`Watcher`: polls a PACS for new series, runs each matching model on each series exactly once
(state in a `WatchState`, so restarts resume instead of repeating) and writes the results back
as DICOM (SR + secondary captures), read back and checked before the job is marked done."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from pydicom import Dataset

from medsight.deploy.prediction import Prediction
from medsight.deploy.predictor import Predictor
from medsight.errors import MedsightError
from medsight.pacs.client import Pacs
from medsight.pacs.selection import HEADER_FIELDS, select
from medsight.pacs.watch_config import ModelRule, WatchConfig
from medsight.pacs.watch_results import write_results
from medsight.pacs.watch_state import Job, WatchState

__all__ = ["ModelRunner", "Outcome", "WatchReport", "Watcher", "dicom_bytes"]

log = logging.getLogger(__name__)
WATCHER_USER = "pacs-watcher"
_SERIES_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "BodyPartExamined",
                  "SeriesDescription", "NumberOfSeriesRelatedInstances", "StudyDate")


class ModelRunner(Protocol):
    """How the watcher runs a model: the service's own prediction path, or a Predictor."""

    def predictor(self, model: str) -> Predictor:
        """The served model's predictor (for its kind, classes and UUID)."""

    def predict(self, model: str, data: bytes | list[bytes], source: dict[str, Any]
                ) -> tuple[Prediction, str | None]:
        """Predict one instance (bytes of a DICOM file) or a volume (the series' files) and
        store it as a prediction record with `source`; returns it and the record's id."""

    def explain(self, model: str, data: bytes | list[bytes]) -> Prediction:
        """The same prediction (an instance, or a volume's files) with its heatmap, for a
        secondary capture; not recorded."""


@dataclass(frozen=True)
class Outcome:
    """What one poll did with one (series, model)."""

    series_uid: str
    model: str
    status: str  # done | skipped | failed | waiting
    attempts: int
    reason: str = ""
    written: int = 0


@dataclass
class WatchReport:
    """One poll: the series seen and every outcome."""

    series_seen: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    retried: int = 0
    new: int = 0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")

    def summary(self) -> str:
        return (f"{self.series_seen} series seen: {self.new} new, {self.done} done, "
                f"{self.skipped} skipped, {self.failed} failed, {self.retried} retried")


def dicom_bytes(ds: Dataset) -> bytes:
    """A dataset as a DICOM file (with its file meta)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def suspicion(predictor: Predictor, pred: Prediction) -> float:
    """How suspicious a prediction is, to pick the instances given a secondary capture: the
    positive class's probability (binary), the highest box score (detector), else confidence."""
    if pred.is_detection:
        return max((float(b["score"]) for b in pred.boxes or []), default=0.0)
    if predictor.task == "binary" and len(predictor.classes) == 2:
        positive = predictor.classes[int(predictor.positive if predictor.positive is not None else 1)]
        return float(pred.probabilities.get(positive, 0.0))
    return float(pred.confidence)


def _header_only(ds: Dataset) -> Dataset:
    """`ds` without its pixel data: enough for the SR (the SC sources are fetched again)."""
    if "PixelData" in ds:
        del ds.PixelData
    return ds


def _instance_key(h: dict[str, Any]) -> tuple[int, str]:
    try:
        number = int(h.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        number = 0
    return number, str(h.get("SOPInstanceUID", ""))


class Watcher:
    """Polls `pacs` as `config` says; `state` remembers jobs, `runner` runs the models."""

    def __init__(self, pacs: Pacs, config: WatchConfig, state: WatchState, runner: ModelRunner,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pacs, self.config, self.state, self.runner = pacs, config, state, runner
        self.name = config.pacs.display
        self._today, self._clock = today, clock
        self._counts: dict[str, tuple[int, float]] = {}  # series -> (instances, since when)

    # -- polling ------------------------------------------------------------------------------
    def series_query(self) -> dict[str, str]:
        """The QIDO series query of one poll: the configured keys and the StudyDate window."""
        query = dict(self.config.watch.query)
        days = self.config.watch.lookback_days
        if days is not None and "StudyDate" not in query:
            start = self._today() - timedelta(days=days)
            query["StudyDate"] = f"{start:%Y%m%d}-{self._today():%Y%m%d}"
        return query

    def poll_once(self) -> WatchReport:
        """One pass over the series in the window; one broken series never stops the others."""
        report = WatchReport()
        answers = self.pacs.search("series", self.series_query(), fields=_SERIES_FIELDS)
        # one entry per series: a PACS may list a series once per patient record it filed it under
        series = list({str(a["SeriesInstanceUID"]): a for a in answers}.values())
        report.series_seen = len(series)
        for info in series:
            for rule in self.config.models:
                outcome = self._one(info, rule, report)
                if outcome is not None:
                    report.outcomes.append(outcome)
        log.info("PACS %s: %s", self.name, report.summary())
        return report

    def run_forever(self, stop: threading.Event,
                    may_poll: Callable[[], bool] | None = None) -> None:
        """Poll every `poll_s` until `stop` is set; a failing poll is logged and retried. With
        `may_poll`, each poll first asks it and is skipped on False (another process watches)."""
        while not stop.is_set():
            try:
                if may_poll is None or may_poll():
                    self.poll_once()
            except MedsightError as exc:
                log.error("PACS %s: poll failed: %s", self.name, exc)
            except Exception:  # the watcher thread must outlive any one poll
                log.exception("PACS %s: poll failed unexpectedly", self.name)
            stop.wait(self.config.watch.poll_s)

    # -- one series and model -------------------------------------------------------------------
    def _settled(self, series_uid: str, count: int) -> bool:
        settle = self.config.watch.settle_s
        if settle <= 0:
            return True
        now = self._clock()
        seen, since = self._counts.get(series_uid, (-1, now))
        if seen != count:
            self._counts[series_uid] = (count, now)
            return False
        return now - since >= settle

    def _one(self, info: dict[str, Any], rule: ModelRule, report: WatchReport) -> Outcome | None:
        study, series = str(info["StudyInstanceUID"]), str(info["SeriesInstanceUID"])
        job = self.state.get(self.name, series, rule.model)
        if job is not None and job.status in ("done", "skipped"):
            return None
        max_attempts = self.config.watch.max_attempts
        if job is not None and job.status == "failed" and job.attempts >= max_attempts:
            return Outcome(series, rule.model, "failed", job.attempts,
                           f"gave up after {job.attempts} attempts: {job.last_error}")
        try:
            headers = sorted(self.pacs.search("instance", study=study, series=series,
                                              fields=(*HEADER_FIELDS, "InstanceNumber")),
                             key=_instance_key)
        except MedsightError as exc:
            log.warning("PACS %s: cannot list a series' instances: %s", self.name, exc)
            return Outcome(series, rule.model, "waiting", job.attempts if job else 0, str(exc))
        if not self._settled(series, len(headers)):
            return Outcome(series, rule.model, "waiting", job.attempts if job else 0,
                           f"{len(headers)} instances, settling")
        predictor = self.runner.predictor(rule.model)
        uuid = predictor.model_info.get("uuid")
        ok, reason = select(rule.rules, info, headers)
        if not ok:
            self.state.skip(self.name, rule.model, uuid, study, series, len(headers), reason)
            report.new += job is None
            return Outcome(series, rule.model, "skipped", 0, reason)
        report.new += job is None
        report.retried += job is not None and job.attempts > 0
        job = self.state.claim(self.name, rule.model, uuid, study, series, len(headers))
        try:
            written = self._run(job, rule, predictor, headers)
        except Exception as exc:  # a hostile or broken series fails its job, not the watcher
            error = str(exc) if isinstance(exc, MedsightError) else f"{type(exc).__name__}: {exc}"
            self.state.fail(job.id, error[:2000])
            log.warning("PACS %s: a series failed for %s (attempt %d): %s",
                        self.name, rule.model, job.attempts, error)
            return Outcome(series, rule.model, "failed", job.attempts, error)
        return Outcome(series, rule.model, "done", job.attempts, written=len(written))

    def _source(self, job: Job, sop_uid: str | None) -> dict[str, Any]:
        return {"kind": "pacs", "pacs": self.name, "study_uid": job.study_uid,
                "series_uid": job.series_uid, "sop_uid": sop_uid,
                "study_url": self.config.study_url(job.study_uid), "results": []}

    def _retrieve(self, job: Job, sop_uid: str) -> Dataset:
        found = list(self.pacs.retrieve(job.study_uid, job.series_uid, sop_uid))
        if len(found) != 1:
            raise MedsightError(f"{self.name}: instance {sop_uid} came back as {len(found)} datasets")
        return found[0]

    def _run(self, job: Job, rule: ModelRule, predictor: Predictor,
             headers: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
        done = self.state.predicted(job.id)
        sops = [str(h["SOPInstanceUID"]) for h in headers]
        sources: dict[str, Dataset] = {}
        preds: dict[str, Prediction] = {}
        if predictor.is_volume:
            datasets = [self._retrieve(job, sop) for sop in sops]
            if job.series_uid not in done:
                pred, pid = self.runner.predict(rule.model, [dicom_bytes(d) for d in datasets],
                                                self._source(job, None))
                self.state.record(job.id, job.series_uid, pid, pred.to_dict())
                done[job.series_uid] = (pid, pred.to_dict())
            sources = dict(zip(sops, map(_header_only, datasets), strict=True))
            preds[job.series_uid] = Prediction.from_dict(done[job.series_uid][1])
        else:
            for sop in sops:
                ds = self._retrieve(job, sop)
                if sop not in done:
                    pred, pid = self.runner.predict(rule.model, dicom_bytes(ds), self._source(job, sop))
                    self.state.record(job.id, sop, pid, pred.to_dict())
                    done[sop] = (pid, pred.to_dict())
                    if self.config.watch.pause_s:
                        time.sleep(self.config.watch.pause_s)
                sources[sop] = _header_only(ds)
                preds[sop] = Prediction.from_dict(done[sop][1])
        results = write_results(self, job, rule, predictor, sources, preds)
        version = predictor.model_info.get("version")
        self.state.finish(job.id, results, {
            "ts": datetime.now(UTC), "user": WATCHER_USER, "action": "pacs.write", "status": 201,
            "target": job.series_uid, "model_version": f"{rule.model} {version}",
            "detail": f"{len(results)} result instance(s) stored in {self.name}: "
                      + ", ".join(r["sop_instance"] for r in results)})
        return results

