"""Calibration: do predicted probabilities match observed frequencies? Reliability curve and ECE.

Binning follows ``sklearn.calibration.calibration_curve``: ``n_bins`` bins, equal-width on [0, 1]
(``strategy="uniform"``) or at quantiles of ``p`` (``"quantile"``); a value on an inner edge falls
in the lower bin. ECE is the count-weighted mean of ``|observed - mean predicted|`` over bins.
For multiclass problems use ``top_label`` first (confidence of the predicted class, and whether
that prediction was right).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.errors import InvalidConfig, InvalidDataset
from medsight.jsonable import jsonable
from medsight.models.threshold import check_probabilities

STRATEGIES = ("uniform", "quantile")


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per bin: edges (n_bins + 1), mean predicted, observed frequency (NaN if empty), counts."""

    edges: np.ndarray
    mean_predicted: np.ndarray
    observed: np.ndarray
    counts: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; empty bins give None."""
        return jsonable(
            {
                "edges": self.edges,
                "mean_predicted": self.mean_predicted,
                "observed": self.observed,
                "counts": self.counts,
            }
        )


def bin_edges(p: np.ndarray, n_bins: int = 10, strategy: str = "uniform") -> np.ndarray:
    """The ``n_bins + 1`` bin edges for probabilities `p`."""
    if int(n_bins) < 1:
        raise InvalidConfig(f"n_bins must be at least 1, got {n_bins}")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, int(n_bins) + 1)
    if strategy == "quantile":
        return np.percentile(p, np.linspace(0, 100, int(n_bins) + 1))
    raise InvalidConfig(f"calibration strategy must be one of {STRATEGIES}, got {strategy!r}")


def bin_index(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each probability (0 .. n_bins-1), as ``calibration_curve`` assigns them."""
    return np.searchsorted(edges[1:-1], p)


def _outcomes(y_true: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    prob = check_probabilities(np.asarray(p, dtype=np.float64).ravel(), "p")
    if len(y) != len(prob) or len(y) == 0:
        raise InvalidDataset(
            f"need as many outcomes as probabilities (> 0); got {len(y)} and {len(prob)}"
        )
    if not np.isin(y, (0, 1)).all():
        raise InvalidDataset(
            "calibration outcomes must be 0/1 (or bool); map the positive class first"
        )
    return y.astype(np.float64), prob


def reliability_curve(
    y_true: Any, p: Any, n_bins: int = 10, strategy: str = "uniform"
) -> ReliabilityCurve:
    """Reliability diagram data for 0/1 outcomes `y_true` and predicted probabilities `p`."""
    y, prob = _outcomes(y_true, p)
    edges = bin_edges(prob, n_bins, strategy)
    idx = bin_index(prob, edges)
    counts = np.bincount(idx, minlength=int(n_bins))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=prob, minlength=int(n_bins)) / counts
        observed = np.bincount(idx, weights=y, minlength=int(n_bins)) / counts
    return ReliabilityCurve(edges, mean_p, observed, counts)


def expected_calibration_error(
    y_true: Any, p: Any, n_bins: int = 10, strategy: str = "uniform"
) -> float:
    """ECE = sum over bins of (count / N) * |observed - mean predicted|."""
    curve = reliability_curve(y_true, p, n_bins, strategy)
    filled = curve.counts > 0
    gaps = np.abs(curve.observed[filled] - curve.mean_predicted[filled])
    return float((curve.counts[filled] * gaps).sum() / curve.counts.sum())


def top_label(y_true: Any, proba: Any) -> tuple[np.ndarray, np.ndarray]:
    """Multiclass -> (1 where the most probable class is right, its probability), for ECE."""
    prob = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true).ravel()
    if prob.ndim != 2 or len(prob) != len(y):
        raise InvalidDataset(
            f"top_label needs proba (N, K) and N labels; got {prob.shape}, {y.shape}"
        )
    return (prob.argmax(axis=1) == y).astype(np.int64), prob.max(axis=1)
