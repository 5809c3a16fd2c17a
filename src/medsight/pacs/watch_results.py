"""The watcher's write-back: one SR for a series (a finding per instance, or one for a volume)
and secondary captures of the most suspicious instances, with deterministic UIDs, stored in the
PACS, then read back and checked; returns what was written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydicom import Dataset

from medsight.deploy.prediction import Prediction
from medsight.deploy.predictor import Predictor
from medsight.errors import PacsError
from medsight.pacs.watch_config import ModelRule
from medsight.pacs.watch_state import Job

if TYPE_CHECKING:
    from medsight.pacs.watch import Watcher

__all__ = ["write_results"]


def _written(ds: Dataset) -> dict[str, str]:
    return {"sop_class": str(ds.SOPClassUID), "sop_instance": str(ds.SOPInstanceUID)}


def write_results(watcher: Watcher, job: Job, rule: ModelRule, predictor: Predictor,
                  sources: dict[str, Dataset], preds: dict[str, Prediction]) -> list[dict[str, str]]:
    """Build, store, read back and check the results of one series; the UIDs depend only on
    the PACS, the series, the model's UUID and the source instance, so a rerun after a crash
    overwrites the same objects instead of adding new ones."""
    writes = watcher.config.writes(rule)
    if not writes:
        return []
    from medsight.pacs.result_check import check_sc, check_sr
    from medsight.pacs.sc import build_sc, overlay_for
    from medsight.pacs.sr import Finding, build_sr
    from medsight.pacs.uids import result_uid
    from medsight.pacs.watch import dicom_bytes, suspicion

    uuid = str(predictor.model_info.get("uuid") or rule.model)

    def uid(*parts: Any) -> str:
        return result_uid(watcher.name, job.series_uid, uuid, *parts)

    volume = job.series_uid in preds and job.series_uid not in sources
    if volume:
        findings = [Finding(list(sources.values()), preds[job.series_uid])]
    else:
        findings = [Finding([sources[sop]], preds[sop]) for sop in sources]
    made: list[tuple[Dataset, Any]] = []  # (result, what check_* compares it with)
    if "sr" in writes:
        sr = build_sr(findings, series_uid=uid("sr", "series"), instance_uid=uid("sr", "instance"))
        made.append((sr, findings))
    if "sc" in writes and watcher.config.watch.sc_max > 0:
        if volume:  # one capture of the volume's heatmap, filed against its middle slice
            series = [watcher._retrieve(job, sop) for sop in sources]
            full = series[len(series) // 2]
            explained = watcher.runner.explain(rule.model, [dicom_bytes(d) for d in series])
            chosen = [(full, explained)]
        else:
            ranked = sorted(sources, key=lambda s: -suspicion(predictor, preds[s]))
            chosen = []
            for sop in ranked[:watcher.config.watch.sc_max]:
                full = watcher._retrieve(job, sop)
                chosen.append((full, watcher.runner.explain(rule.model, dicom_bytes(full))))
        for number, (full, explained) in enumerate(chosen, start=1):
            sc = build_sc(full, overlay_for(explained), series_uid=uid("sc", "series"),
                          instance_uid=uid("sc", str(full.SOPInstanceUID)),
                          instance_number=number, model=predictor.model_info)
            made.append((sc, full))
    watcher.pacs.store([ds for ds, _ in made])
    for ds, expected in made:
        back = list(watcher.pacs.retrieve(job.study_uid, str(ds.SeriesInstanceUID),
                                          str(ds.SOPInstanceUID)))
        if len(back) != 1:
            raise PacsError(f"{watcher.name}: result {ds.SOPInstanceUID} was stored but does not "
                            "come back by WADO-RS; check the PACS's storage")
        if expected is findings:
            check_sr(back[0], findings)
        else:
            check_sc(back[0], expected)
    return [_written(ds) for ds, _ in made]
