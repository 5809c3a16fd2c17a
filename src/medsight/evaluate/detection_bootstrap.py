"""Bootstrap confidence intervals of detection metrics over images: pycocotools matches once, then
every resample reweights those per-image matches (`weighted_ap`) and the per-image counts.

Images are the resampled unit (the boxes of one smear move together), with the same resample
weights and percentile intervals as `medsight.evaluate.bootstrap`; a resample in which a metric
is undefined (a class with no true box drawn) is left out of that metric's interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medsight.evaluate.bootstrap import check_bootstrap_args, percentile_interval, resample_weights
from medsight.evaluate.detection_coco import DetectionMatches, count_metrics, weighted_ap


def _mean_defined_rows(values: np.ndarray) -> np.ndarray:
    """Row means over the finite entries (NaN where a row has none)."""
    ok = np.isfinite(values)
    total = np.where(ok, values, 0.0).sum(axis=1)
    n = ok.sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _interval(values: np.ndarray, point: float | None, alpha: float) -> dict[str, Any]:
    low, high, n_valid = percentile_interval(np.asarray(values, dtype=np.float64), alpha)
    return {"value": point, "ci_low": low, "ci_high": high, "n_valid": n_valid}


def detection_ci(
    matches: DetectionMatches,
    true_counts: np.ndarray,
    pred_counts: np.ndarray,
    classes: Sequence[str],
    point: dict[str, Any],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """``{"map50", "map50_95": {value, ci_low, ci_high, n_valid}, "count_mae", "count_exact":
    {class: {...}}}`` with `point` (the metrics on all images) as the values.

    `groups` (one id per image, e.g. the patient) resamples whole groups instead of images.
    """
    check_bootstrap_args(n_boot, alpha)
    ap50, ap = [], []
    mae, exact = [], []
    for w in resample_weights(matches.n_images, int(n_boot), seed, None, groups):
        per_class = np.stack([weighted_ap(m, w) for m in matches.classes], axis=1)  # (B, K, T)
        ap50.append(_mean_defined_rows(per_class[:, :, 0]))
        ap.append(_mean_defined_rows(per_class.mean(axis=2)))
        m, e = count_metrics(true_counts, pred_counts, w)
        mae.append(m)
        exact.append(e)
    mae_all, exact_all = np.concatenate(mae), np.concatenate(exact)
    return {
        "map50": _interval(np.concatenate(ap50), point["map50"], alpha),
        "map50_95": _interval(np.concatenate(ap), point["map50_95"], alpha),
        "count_mae": {c: _interval(mae_all[:, k], point["count_mae"][c], alpha)
                      for k, c in enumerate(classes)},
        "count_exact": {c: _interval(exact_all[:, k], point["count_exact"][c], alpha)
                        for k, c in enumerate(classes)},
    }
