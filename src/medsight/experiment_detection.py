"""The detection branch of `run_experiment`: holdout (given or seeded splits), fit each detector,
choose on validation mAP, score val/test (and an external set) and write the run folder:
``model/``, ``metrics.json``, ``predictions.csv`` (one row per box), ``predictions_test.coco.json``
and ``report.html`` with the boxes drawn."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medsight.config import ExperimentConfig, ModelConfig
from medsight.data.dataset import Dataset
from medsight.data.open import open_source
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.evaluate.detection_holdout import (
    DetectionHoldoutResult,
    DetectionSplitResult,
    check_detector,
    detection_holdout_evaluate,
    evaluate_detection_split,
)
from medsight.evaluate.report import DetectionSplit, ReportData, render_report
from medsight.jsonable import jsonable
from medsight.preprocess import Preprocess

DETECTION_METRICS = ("map50", "map50_95")
EXAMPLES = 6  # test images drawn in the report


def run_detection(cfg: ExperimentConfig, ds: Dataset, out: Path, quality: dict[str, Any],
                  say: Callable[[str], None],
                  progress: Callable | None = None) -> tuple[dict[str, Any], Path, str]:
    """Fit, choose and evaluate the configured detector(s) on `ds`; (metrics, report, label)."""
    from medsight.experiment import build_estimator

    if cfg.data.split.method == "kfold":
        raise InvalidConfig(
            "k-fold cross-validation is not offered for detectors (one fit takes minutes); set "
            "data.split.method to 'given' (the dataset's own lists) or 'holdout'"
        )
    ev = cfg.evaluation
    selection_metric(ev.select_by)  # a bad name or model kind fails before minutes of training
    for spec in cfg.models:
        check_detector(build_estimator(spec, cfg.preprocess, cfg.seed), spec.label)
    results: dict[str, DetectionHoldoutResult] = {}
    for spec in cfg.models:
        say(f"fitting {spec.label}")

        def factory(spec: ModelConfig = spec) -> Any:
            return build_estimator(spec, cfg.preprocess, cfg.seed, None, progress)

        results[spec.label] = detection_holdout_evaluate(
            factory, ds, ci=ev.ci, n_boot=ev.n_boot, allow_leakage=ev.allow_leakage, seed=cfg.seed)
    label, board = select_detector(results, ev.select_by)
    best = results[label]
    best.estimator.save(out / "model")
    metrics: dict[str, Any] = {"model": label, "task": "detection", **best.to_dict()}
    if len(results) > 1:
        metrics["candidates"] = board
    splits = dict(best.splits)
    if cfg.data.external:
        say(f"external evaluation on {cfg.data.external}")
        ext = open_source(cfg.data.external, **cfg.data.external_options)
        if list(ext.classes) != list(best.estimator.classes_):
            raise InvalidDataset(f"{ext.name} has classes {ext.classes}, the detector "
                                 f"{best.estimator.classes_}")
        splits["external"] = evaluate_detection_split(best.estimator, ext, "external", ci=ev.ci,
                                                      n_boot=ev.n_boot, seed=cfg.seed)
        metrics["external"] = splits["external"].to_dict()
    metrics["quality"] = quality
    (out / "metrics.json").write_text(json.dumps(jsonable(metrics), indent=2))
    write_box_predictions(out / "predictions.csv", splits, ds.classes)
    if "test" in splits:
        (out / "predictions_test.coco.json").write_text(
            json.dumps(coco_results(splits["test"], ds.classes)))
    say("writing report")
    report = render_report(_report_data(cfg, ds, best, splits, label, board, quality),
                           out / "report.html", figure_dir=out / "plots")
    return metrics, report, label


def selection_metric(name: str) -> str:
    """``map50`` or ``map50_95`` (the classifiers' default ``auc`` means ``map50``)."""
    metric = "map50" if name == "auc" else name
    if metric not in DETECTION_METRICS:
        raise InvalidConfig(f"evaluation.select_by {name!r} is not a detection metric; use one "
                            f"of {list(DETECTION_METRICS)}")
    return metric


def select_detector(results: dict[str, DetectionHoldoutResult],
                    metric: str) -> tuple[str, list[dict[str, Any]]]:
    """The candidate with the best validation `metric` (see `selection_metric`), never chosen
    on test; with the leaderboard rows."""
    metric = selection_metric(metric)
    board = []
    for label, res in results.items():
        val, test = res.splits.get("val"), res.splits.get("test")
        key = val.evaluation.metrics[metric] if val else None
        board.append({"model": label, f"val {metric}": key,
                      f"test {metric}": test.evaluation.metrics[metric] if test else None,
                      "_key": -np.inf if key is None else float(key)})
    if len(board) > 1 and all(r["_key"] == -np.inf for r in board):
        raise InvalidDataset("several candidate detectors but no annotated 'val' split to "
                             "choose between them; add one (data.split.method: holdout)")
    board.sort(key=lambda r: r["_key"], reverse=True)
    for r in board:
        r.pop("_key")
    return board[0]["model"], board


def write_box_predictions(path: Path, splits: dict[str, DetectionSplitResult],
                          classes: list[str]) -> None:
    """One row per predicted box: split, ref, class, score and x1, y1, x2, y2 (pixel edges)."""
    rows = []
    for name, s in splits.items():
        for ref, det in zip(s.refs, s.predictions, strict=True):
            for (x1, y1, x2, y2), score, k in zip(det.xyxy.tolist(), det.scores.tolist(),
                                                  det.labels.tolist(), strict=True):
                rows.append({"split": name, "ref": ref, "label": classes[k], "score": score,
                             "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    cols = ["split", "ref", "label", "score", "x1", "y1", "x2", "y2"]
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)


def coco_results(split: DetectionSplitResult, classes: list[str]) -> dict[str, Any]:
    """The split's detections as COCO JSON: ``images`` (file_name = ref), ``categories`` and
    ``annotations`` in COCO's results form (image_id, category_id, bbox [x, y, w, h], score),
    loadable with pycocotools' ``COCO.loadRes(d["annotations"])``."""
    anns = []
    for i, det in enumerate(split.predictions):
        for (x1, y1, x2, y2), score, k in zip(det.xyxy.tolist(), det.scores.tolist(),
                                              det.labels.tolist(), strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": k + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "score": score, "iscrowd": 0})
    return {"images": [{"id": i + 1, "file_name": ref} for i, ref in enumerate(split.refs)],
            "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)],
            "annotations": anns}


def _examples_png(ds: Dataset, split: DetectionSplitResult, threshold: float) -> bytes | None:
    """The test images the model counts worst (largest total count error), boxes drawn."""
    from medsight.evaluate.detection_plots import annotated_image, boxes_grid

    err = np.abs(split.evaluation.pred_counts - split.evaluation.true_counts).sum(axis=1)
    order = np.argsort(-err, kind="stable")[:EXAMPLES]
    by_ref = {r.ref: i for i, r in enumerate(ds.records)}
    pictures, titles = [], []
    for j in order:
        i = by_ref.get(split.refs[j])
        if i is None:
            continue
        pixels = ds.image(i).pixels
        if pixels.ndim != 3:
            return None  # volumes: no 2D picture to draw on
        pictures.append(annotated_image(pixels, split.truth[j], split.predictions[j],
                                        ds.classes, threshold))
        true, pred = split.evaluation.true_counts[j], split.evaluation.pred_counts[j]
        name = Path(split.refs[j]).name
        titles.append(f"{name if len(name) <= 32 else '…' + name[-31:]}\n" + ", ".join(
            f"{c} {t}/{p}" for c, t, p in zip(ds.classes, true, pred, strict=True))
            + " (true/pred)")
    return boxes_grid(pictures, titles) if pictures else None


def _report_data(cfg: ExperimentConfig, ds: Dataset, best: DetectionHoldoutResult,
                 splits: dict[str, DetectionSplitResult], label: str,
                 board: list[dict[str, Any]], quality: dict[str, Any]) -> ReportData:
    from medsight.experiment import _data_summary, _preview_png

    est = best.estimator
    threshold = float(est.score_threshold_)
    chain = Preprocess.from_config(cfg.preprocess)
    shown = []
    for name, s in splits.items():
        examples = _examples_png(ds, s, threshold) if name == "test" else None
        shown.append(DetectionSplit(name, s.evaluation, examples))
    order = {"train": 0, "val": 1, "test": 2}
    counts = {}
    for split_name in sorted({r.split or "unassigned" for r in ds.records},
                             key=lambda n: (order.get(n, 3), n)):
        sub = ds.subset([i for i, r in enumerate(ds.records)
                         if (r.split or "unassigned") == split_name])
        counts[split_name] = sub.class_counts()
    notes = []
    unannotated = sum(1 for r in ds.records if r.boxes is None)
    if unannotated:
        notes.append(f"{unannotated} image(s) without annotations were left out of training "
                     "and evaluation.")
    if quality.get("leakage"):
        notes.append(f"The data check found {quality['leakage']} leakage finding(s): see "
                     "`medsight data check`.")
    return ReportData(
        title=f"{cfg.name}: {label}", task="detection", class_names=list(ds.classes),
        positive_class=None, model_label=label, threshold=None, splits=[], detection=shown,
        data_summary={**_data_summary(cfg, ds, counts), "counted": "boxes per class",
                      "score threshold": f"{threshold:.3f} (the detector's, for counts)"},
        quality=quality, preprocess_steps=[repr(s) for s in chain],
        preprocess_preview_png=_preview_png(ds, chain),
        leaderboard=board if len(board) > 1 else [],
        history=list(getattr(est, "history_", []) or []),
        config_text=yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), notes=notes,
    )
