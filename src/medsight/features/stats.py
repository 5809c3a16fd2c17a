"""Whole-image intensity statistics: the simplest, fully vectorised baseline features.

Per image (and per channel when asked; volumes use every voxel): mean, standard deviation,
minimum, maximum, percentiles, skewness, excess kurtosis and the Shannon entropy (bits) of an
intensity histogram with ``bins`` equal bins between the image's own minimum and maximum.
A constant image has skewness, kurtosis and entropy 0 (instead of undefined values).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from medsight.errors import InvalidConfig
from medsight.features.base import ImageFeatureExtractor
from medsight.features.registry import register_feature

DEFAULT_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def histogram_entropy(flat: np.ndarray, bins: int) -> np.ndarray:
    """Entropy in bits of each row's ``bins``-bin histogram over the row's own min-max range."""
    n = len(flat)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    scaled = (flat - lo) / np.where(span > 0, span, 1.0)
    idx = np.clip((scaled * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount((idx + bins * np.arange(n)[:, None]).ravel(), minlength=n * bins)
    prob = counts.reshape(n, bins) / flat.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(prob > 0, -prob * np.log2(prob), 0.0)
    return terms.sum(axis=1)


@register_feature("stats")
class GlobalStats(ImageFeatureExtractor):
    """Intensity statistics of each image; feature names ``stats_mean``, ``stats_p25``, ...

    Parameters: ``percentiles`` (0-100), ``bins`` for the entropy histogram, ``channels``
    (``"luminance"`` or ``"per_channel"``).
    """

    planar = False

    def __init__(
        self,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        bins: int = 64,
        channels: str = "luminance",
    ):
        self.percentiles = percentiles
        self.bins = bins
        self.channels = channels

    def _check_params(self) -> None:
        q = np.asarray(self.percentiles, dtype=float)
        if q.ndim != 1 or ((q < 0) | (q > 100)).any():
            raise InvalidConfig(
                f"GlobalStats: percentiles must lie in 0..100, got {self.percentiles}"
            )
        if int(self.bins) < 2:
            raise InvalidConfig(f"GlobalStats: bins must be at least 2, got {self.bins}")

    def _view_names(self, shape: tuple[int, ...]) -> list[str]:
        pct = [f"p{float(q):g}" for q in self.percentiles]
        names = ["mean", "std", "min", "max", *pct, "skewness", "kurtosis", "entropy"]
        return [f"stats_{n}" for n in names]

    def _extract(self, views: np.ndarray) -> np.ndarray:
        flat = views.reshape(len(views), -1)
        constant = flat.max(axis=1) == flat.min(axis=1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy: constant rows
            skew = np.where(constant, 0.0, sps.skew(flat, axis=1))
            kurt = np.where(constant, 0.0, sps.kurtosis(flat, axis=1))
        cols = [
            flat.mean(axis=1),
            flat.std(axis=1),
            flat.min(axis=1),
            flat.max(axis=1),
            *np.percentile(flat, np.asarray(self.percentiles, dtype=float), axis=1),
            skew,
            kurt,
            histogram_entropy(flat, int(self.bins)),
        ]
        return np.column_stack(cols)
