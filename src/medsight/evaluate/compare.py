"""Paired comparison of two models scored on the same test samples.

``delong_test``: DeLong's test for two correlated ROC AUCs, with the fast midrank algorithm of
Sun & Xu (2014, IEEE Signal Processing Letters 21(11)), O(N log N). ``paired_bootstrap``: any
metric, both models evaluated on the same resamples; the p-value is the two-sided bootstrap
sign test ``2 * min(P(diff <= 0), P(diff >= 0))`` with the +1 correction, so it is never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import norm, rankdata

from medsight.errors import InvalidDataset
from medsight.evaluate.batched import check_metric_names, weighted_metrics
from medsight.evaluate.bootstrap import check_bootstrap_args, percentile_interval, resample_weights
from medsight.evaluate.inputs import check_inputs


class DeLongResult(NamedTuple):
    """AUCs of models a and b, their difference a - b, the z statistic and two-sided p-value."""

    auc_a: float
    auc_b: float
    diff: float
    z: float
    p: float


class PairedBootstrapResult(NamedTuple):
    """Metric of a and b, difference a - b with its interval, p-value, valid resamples."""

    metric: str
    value_a: float | None
    value_b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    n_valid: int


def delong_covariance(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs ``(M,)`` and their DeLong covariance ``(M, M)`` for scores ``(M, N)`` (Sun & Xu)."""
    x, y = scores[:, positive], scores[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    tx = rankdata(x, axis=1)
    ty = rankdata(y, axis=1)
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v10 = (tz[:, :m] - tx) / n  # per positive: fraction of negatives it outranks
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: fraction of positives outranking it
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def delong_test(
    y_true: Any, score_a: Any, score_b: Any, positive_class: int = 1
) -> DeLongResult:
    """DeLong test of AUC(a) = AUC(b); scores are P(positive) or any score, higher = positive."""
    y = np.asarray(y_true).ravel() == positive_class
    a, b = np.asarray(score_a, float).ravel(), np.asarray(score_b, float).ravel()
    if not len(a) == len(b) == len(y):
        raise InvalidDataset(f"y_true has {len(y)} samples but the scores {len(a)} and {len(b)}")
    scores = np.vstack([a, b])
    if not np.isfinite(scores).all():
        raise InvalidDataset("scores contain NaN or infinity")
    if y.sum() < 2 or (~y).sum() < 2:
        raise InvalidDataset(
            f"DeLong's test needs at least 2 positive (class {positive_class}) and 2 negative "
            f"samples; got {int(y.sum())} and {int((~y).sum())}"
        )
    aucs, cov = delong_covariance(y, scores)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 1e-15:
        z = 0.0 if abs(diff) <= 1e-12 else float(np.sign(diff) * np.inf)
    else:
        z = diff / np.sqrt(var)
    p = float(2 * norm.sf(abs(z)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, float(z), p)


def paired_bootstrap(
    y_true: Any,
    proba_a: Any,
    proba_b: Any,
    metric: str = "auc",
    n_boot: int = 1000,
    seed: int = 0,
    *,
    task: str = "binary",
    positive_class: int = 1,
    threshold: float | Sequence[float] | None = None,
    alpha: float = 0.05,
    stratified: bool = True,
    groups: Sequence[Any] | None = None,
) -> PairedBootstrapResult:
    """Difference metric(a) - metric(b) on shared resamples, its interval and a p-value."""
    check_bootstrap_args(n_boot, alpha)
    pa = check_inputs(y_true, proba_a, task, positive_class, threshold)
    pb = check_inputs(y_true, proba_b, task, positive_class, threshold)
    (name,) = check_metric_names(pa.task, [metric])
    ones = np.ones((1, pa.n))
    va = weighted_metrics(pa, ones, [name])[0][name][0]
    vb = weighted_metrics(pb, ones, [name])[0][name][0]
    strata = pa.y if stratified and pa.task != "multilabel" else None
    diffs = []
    for w in resample_weights(pa.n, int(n_boot), seed, strata, groups):
        value_a = weighted_metrics(pa, w, [name])[0][name]
        diffs.append(value_a - weighted_metrics(pb, w, [name])[0][name])
    d = np.concatenate(diffs)
    low, high, n_valid = percentile_interval(d, alpha)
    ok = d[np.isfinite(d)]
    p = None
    if n_valid:
        tail = min((ok <= 0).sum(), (ok >= 0).sum())
        p = float(min(1.0, 2 * (tail + 1) / (n_valid + 1)))

    def fin(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    return PairedBootstrapResult(name, fin(va), fin(vb), fin(va - vb), low, high, p, n_valid)
