"""Detection evaluation of one split: COCO mAP@0.5 and mAP@0.5:0.95 (pycocotools), per-class AP,
precision-recall curves at IoU 0.5, the counting error per image and class at the model's score
threshold, and bootstrap confidence intervals over images, in the shape of ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.boxes import Boxes, Detections
from medsight.errors import InvalidConfig
from medsight.evaluate.detection_bootstrap import detection_ci
from medsight.evaluate.detection_coco import (
    MAX_DETECTIONS,
    RECALL_THRESHOLDS,
    average_precision,
    coco_evaluate,
    count_errors,
    count_metrics,
)

__all__ = ["DetectionEvaluation", "evaluate_detections"]


@dataclass
class DetectionEvaluation:
    """Metrics (JSON-ready, ``metrics.json``'s split entry) plus what the report plots:
    ``pr_curves`` (K, 101) interpolated precision at `recall_thresholds` (NaN: no true box),
    and the (N, K) true and predicted counts per image."""

    classes: list[str]
    metrics: dict[str, Any]
    pr_curves: np.ndarray
    recall_thresholds: np.ndarray
    true_counts: np.ndarray
    pred_counts: np.ndarray


def _value(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def evaluate_detections(
    truth: Sequence[Boxes],
    predictions: Sequence[Detections],
    classes: Sequence[str],
    score_threshold: float = 0.5,
    max_detections: int = MAX_DETECTIONS,
    ci: bool = True,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> DetectionEvaluation:
    """Evaluate `predictions` (one `Detections` per image, all scores: AP ranks them) against
    `truth` (one `Boxes` per image, same order).

    Counts use the detections scoring at least `score_threshold` (the threshold a reader sees);
    AP counts at most `max_detections` per image (COCO: 100). With `ci`, percentile intervals
    from `n_boot` resamples of images (of `groups`, e.g. patients, when given).
    """
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise InvalidConfig(f"score_threshold must be in [0, 1], got {score_threshold}")
    names = [str(c) for c in classes]
    ev, matches = coco_evaluate(truth, predictions, len(names), max_detections)
    ap = average_precision(ev)
    true, pred = count_errors(truth, predictions, len(names), float(score_threshold))
    mae, exact = count_metrics(true, pred)
    metrics: dict[str, Any] = {
        "map50": ap["map50"],
        "map50_95": ap["map50_95"],
        "per_class_ap": {c: {"ap50": _value(ap["ap50"][k]), "ap50_95": _value(ap["ap"][k]),
                             "n_boxes": int(true[:, k].sum())} for k, c in enumerate(names)},
        "count_mae": {c: float(mae[0, k]) for k, c in enumerate(names)},
        "count_exact": {c: float(exact[0, k]) for k, c in enumerate(names)},
        "mean_count": {c: {"true": float(true[:, k].mean()), "predicted": float(pred[:, k].mean())}
                       for k, c in enumerate(names)},
        "score_threshold": float(score_threshold),
        "max_detections": int(max_detections),
        "n": len(truth),
        "n_boxes": int(true.sum()),
    }
    if ci:
        metrics["ci"] = detection_ci(matches, true, pred, names, metrics, n_boot=n_boot,
                                     alpha=alpha, seed=seed, groups=groups)
    return DetectionEvaluation(names, metrics, ap["pr_curves"], RECALL_THRESHOLDS.copy(),
                               true, pred)
