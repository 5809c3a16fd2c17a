"""Predict many inputs in one streaming pass: files and folders in, a JSON, CSV or Parquet results
file and optional HTML reports out, unreadable inputs reported with their reason (``medsight
predict``). The Parquet layout (`medsight.deploy.results_parquet`) is the one the Ray engine
(`medsight.deploy.batch_ray`) writes too.

With a detector bundle the results also hold each input's boxes and counts, and beside a results
file ``X.json`` (or ``X.csv``) go ``X.coco.json`` (COCO: ``images``, ``categories`` and one
``annotations`` entry per returned box, with its ``score``; ``bbox`` is [x, y, width, height] in
original-image pixels, so ``pycocotools``' ``loadRes`` reads the annotations) and ``X_annotated/``
(one PNG per input, the image with the counted boxes drawn)."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from medsight.deploy.entitlement import entitle, record_use
from medsight.deploy.inputs import gather_inputs, read_input, source_label
from medsight.deploy.licence_store import LicenceStore
from medsight.deploy.manifest_inputs import with_fields
from medsight.deploy.prediction import Prediction
from medsight.deploy.predictor import Predictor
from medsight.deploy.report import ReportWriter
from medsight.errors import InvalidConfig, MedsightError

FORMATS = {".json": "json", ".csv": "csv"}
PARQUET = ".parquet"
KEPT_ROWS = 20  # results kept in the summary for display; the file holds them all


@dataclass
class BatchSummary:
    """What a batch did: counts, the first results (for display), every failure with its reason,
    how many documents (``.csv``, ``.txt`` ...) the folder walk skipped, and where the results
    and the report index were written."""

    n: int = 0
    first: list[Prediction] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    warned: int = 0
    skipped: int = 0
    out: Path | None = None
    index: Path | None = None
    entitlement: str | None = None
    coco: Path | None = None
    annotated: Path | None = None

    @property
    def ok(self) -> int:
        return self.n - len(self.failures)


class ResultsWriter:
    """Streams results into a ``.json`` file (a list of objects) or a ``.csv`` file (one row per
    input, a ``p_<class>`` column per class), so memory does not grow with the number of inputs."""

    def __init__(self, path: str | os.PathLike[str], classes: list[str],
                 detection: bool = False) -> None:
        self.path = Path(path)
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise InvalidConfig(f"--out {self.path}: use a .json, .csv or .parquet file name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("w", encoding="utf-8", newline="")
        self._count = 0
        if self.format == "csv":
            self._csv = csv.writer(self._fh)
            per_class = [f"n_{c}" for c in classes] if detection else [f"p_{c}" for c in classes]
            self._columns = ["path", "label", "confidence", "threshold", *per_class,
                             "warnings", "error"]
            self._classes = classes
            self._values = "counts" if detection else "probabilities"
            self._csv.writerow(self._columns)
        else:
            self._fh.write("[")

    def write(self, row: dict[str, Any]) -> None:
        if self.format == "csv":
            values = row.get(self._values) or {}
            self._csv.writerow([row["path"], row.get("label"), row.get("confidence"),
                                row.get("threshold"), *[values.get(c) for c in self._classes],
                                "; ".join(row.get("warnings") or []), row.get("error") or ""])
        else:
            self._fh.write(("," if self._count else "") + "\n" + json.dumps(row, allow_nan=False))
        self._count += 1

    def close(self) -> None:
        if self.format == "json":
            self._fh.write("\n]\n")
        self._fh.close()


class DetectionFiles:
    """A detector's COCO document and annotated PNGs beside the results file ``X.ext``:
    ``X.coco.json`` (written on `close`) and ``X_annotated/NNNNNN_<name>.png``."""

    def __init__(self, results: Path, classes: list[str]) -> None:
        from medsight.deploy.detections import coco_categories

        self.classes = classes
        self.coco_path = results.with_name(results.stem + ".coco.json")
        self.png_dir = results.with_name(results.stem + "_annotated")
        self.png_dir.mkdir(parents=True, exist_ok=True)
        self.doc: dict[str, Any] = {"info": {"description": "medsight predict detections"},
                                    "images": [], "categories": coco_categories(classes),
                                    "annotations": []}

    def add(self, prediction: Prediction) -> None:
        from medsight.deploy.detections import coco_results

        image_id = len(self.doc["images"]) + 1
        shape = prediction.input.get("shape") or []
        self.doc["images"].append({"id": image_id, "file_name": prediction.source,
                                   "height": int(shape[-2]) if len(shape) >= 2 else None,
                                   "width": int(shape[-1]) if len(shape) >= 2 else None})
        for row in coco_results(image_id, prediction.boxes or [], self.classes):
            x, y, w, h = row["bbox"]
            self.doc["annotations"].append({**row, "id": len(self.doc["annotations"]) + 1,
                                            "area": round(w * h, 3), "iscrowd": 0})
        if prediction.annotated_png is not None:
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(prediction.source).stem).strip("._")
            (self.png_dir / f"{image_id:06d}_{stem[:60] or 'input'}.png").write_bytes(
                prediction.annotated_png)

    def close(self) -> None:
        self.coco_path.write_text(json.dumps(self.doc, allow_nan=False), encoding="utf-8")


def open_results(path: str | os.PathLike[str], classes: list[str], detection: bool = False,
                 heatmap: bool = False) -> Any:
    """The results writer for `path`'s suffix: `ResultsWriter` (.json, .csv) or, for .parquet,
    `ParquetResultsWriter` (whose columns include ``heatmap`` when heatmaps are drawn)."""
    if Path(path).suffix.lower() == PARQUET:
        from medsight.deploy.results_parquet import ParquetResultsWriter

        return ParquetResultsWriter(path, classes, detection, heatmap)
    return ResultsWriter(path, classes, detection)


def failure_row(source: str, reason: str) -> dict[str, Any]:
    """The results-file object of an input that could not be predicted."""
    return {"path": source, "label": None, "probabilities": None, "confidence": None,
            "warnings": [], "error": reason}


def predict_paths(
    bundle: str | os.PathLike[str],
    paths: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    heatmaps: bool | None = None,
    workers: int = 1,
    timeout_s: float = 30.0,
    memory_mb: int | None = 4096,
    batch_size: int = 32,
    progress: Callable[[int, int | None], None] | None = None,
    licences: LicenceStore | None = None,
    allow_unsigned: bool = False,
) -> BatchSummary:
    """Predict every input under `paths` with `bundle`, reading files in a decode pool of
    `workers` processes (each item under `timeout_s` and `memory_mb`), so an input that crashes
    or hangs its decoder is reported and the rest go on. Heatmaps are drawn when asked, and by
    default when `report_dir` is given. `progress(done, total)` is called after each input.

    With `licences` (the offline command), the run must be entitled first: a signed bundle and a
    valid licence from that store, or an unsigned bundle with `allow_unsigned` (every result then
    says so); a refusal raises before anything is predicted or written."""
    from medsight.io.decode_pool import DecodePool

    paths = [Path(p) for p in paths]
    summary = BatchSummary()
    with DecodePool(work=read_input, workers=max(1, workers), timeout_s=timeout_s,
                    memory_mb=memory_mb) as pool:
        pool.start()  # the workers start while the bundle is verified and its session built
        entitled = None
        if licences is not None:
            entitled = entitle(bundle, allow_unsigned=allow_unsigned, store=licences)
            summary.entitlement = entitled.describe()
        predictor = Predictor(entitled.bundle if entitled else bundle, pool=pool,
                              batch_size=batch_size)
        extra = entitled.warnings if entitled else []
        detector = predictor.detection is not None

        def skip(_path: str) -> None:
            summary.skipped += 1

        fields: dict[int, dict[str, Any]] = {}  # a manifest input's source: row and UIDs
        items = gather_inputs(paths, volumes=predictor.is_volume, on_skip=skip, fields=fields)
        want_heat = bool(report_dir) if heatmaps is None else heatmaps
        writer = (open_results(out, predictor.classes, detector, want_heat and not detector)
                  if out is not None else None)
        boxes = DetectionFiles(writer.path, predictor.classes) if writer and detector else None
        reports = ReportWriter(Path(report_dir), predictor.bundle.manifest) if report_dir else None
        want_heat = want_heat or boxes is not None  # a detector's picture: its boxes drawn
        finished = False
        try:
            total = None
            if not predictor.is_volume:  # walk the folders once: the paths (not pixels) are kept
                items = list(items)      # so the progress bar knows the total
                total = len(items)
            for item, result in predictor.stream(items, heatmap=want_heat):
                summary.n += 1
                if extra and isinstance(result, Prediction):
                    result.warnings = [*result.warnings, *extra]
                _record(summary, source_label(item), result, writer, reports, boxes,
                        fields.pop(summary.n - 1, None))
                if progress is not None:
                    progress(summary.n, total)
            finished = True
        finally:
            if writer is not None and not finished and hasattr(writer, "abort"):
                writer.abort()  # an atomic (Parquet) file is never left half written
            elif writer is not None:
                writer.close()
                summary.out = writer.path
            if boxes is not None:
                boxes.close()
                summary.coco, summary.annotated = boxes.coco_path, boxes.png_dir
            if reports is not None:
                summary.index = reports.close()
            if entitled is not None and summary.ok:
                record_use(entitled)
    return summary


def _record(summary: BatchSummary, source: str, result: Prediction | MedsightError,
            writer: ResultsWriter | None, reports: ReportWriter | None,
            boxes: DetectionFiles | None = None, fields: dict[str, Any] | None = None) -> None:
    if isinstance(result, MedsightError):
        reason = str(result)
        summary.failures.append((source, reason))
        if writer is not None:
            writer.write(with_fields(failure_row(source, reason), fields))
        if reports is not None:
            reports.add_failure(source, reason)
        return
    summary.warned += bool(result.warnings)
    if writer is not None:
        writer.write(with_fields(result.to_dict(), fields))
    if reports is not None:
        reports.add(result)
    if boxes is not None:
        boxes.add(result)
    result.heatmap = result.heatmap_png = result.image_png = result.annotated_png = None  # bounded
    if len(summary.first) < KEPT_ROWS:
        summary.first.append(result)
