"""Bootstrap percentile confidence intervals for any metric, vectorised over resamples.

Resampling draws units with replacement: samples, or whole groups (e.g. patients) when `groups`
is given, so that correlated images of one patient move together. With ``stratified=True`` units
are drawn within each class (a group's class is its most frequent label), so every resample keeps
the class counts and metrics such as AUC stay defined; multilabel resampling is unstratified.
A resample in which a metric is undefined is left out of that metric's interval (``n_valid``
says how many remained). Binary thresholds stay fixed; they are not re-chosen per resample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from medsight.errors import InvalidConfig, InvalidDataset
from medsight.evaluate.batched import HEADLINE_METRICS, check_metric_names, weighted_metrics
from medsight.evaluate.inputs import check_inputs

CHUNK_ELEMENTS = 4_000_000  # resample weights (B x N) held in memory at once

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def check_bootstrap_args(n_boot: int, alpha: float) -> None:
    """InvalidConfig unless ``n_boot >= 1`` and ``0 < alpha < 1``."""
    if int(n_boot) < 1:
        raise InvalidConfig(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < float(alpha) < 1.0:
        raise InvalidConfig(f"alpha must be in (0, 1), got {alpha}")


def resample_weights(
    n: int,
    n_boot: int,
    seed: int = 0,
    strata: np.ndarray | None = None,
    groups: Sequence[Any] | None = None,
) -> Iterator[np.ndarray]:
    """Yield blocks ``(b, n)`` of multiplicities (how often each sample was drawn), n_boot in all.

    `strata` (N,) labels to stratify by (None: plain resampling); `groups` (N,) unit ids.
    """
    if groups is None:
        unit = np.arange(n)
    else:
        if len(groups) != n:
            raise InvalidDataset(f"groups has {len(groups)} entries for {n} samples")
        unit = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)[1]
    n_units = int(unit.max()) + 1
    if strata is None:
        pools = [np.arange(n_units)]
    else:
        # A unit's stratum: its most frequent stratum label (ties -> the smallest label).
        labels, codes = np.unique(strata, return_inverse=True)
        table = np.zeros((n_units, len(labels)), dtype=np.int64)
        np.add.at(table, (unit, codes), 1)
        unit_stratum = table.argmax(axis=1)
        pools = [np.flatnonzero(unit_stratum == s) for s in range(len(labels))]
        pools = [p for p in pools if len(p)]
    rng = np.random.default_rng(seed)
    step = max(1, CHUNK_ELEMENTS // max(n, n_units))
    done = 0
    while done < n_boot:
        b = min(step, n_boot - done)
        draws = np.concatenate([pool[rng.integers(0, len(pool), (b, len(pool)))] for pool in pools],
                               axis=1)
        idx = draws + n_units * np.arange(b)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n_units).reshape(b, n_units)
        yield counts[:, unit].astype(np.float64)
        done += b


def percentile_interval(values: np.ndarray, alpha: float) -> tuple[float | None, float | None, int]:
    """(low, high, n_valid) percentile interval of the finite `values`; None when none is."""
    ok = values[np.isfinite(values)]
    if len(ok) == 0:
        return None, None, 0
    low, high = np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high), int(len(ok))


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _callable_distribution(fn: MetricFn, y: np.ndarray, p: np.ndarray, blocks) -> np.ndarray:
    values = []
    for w in blocks:
        for row in w:
            idx = np.repeat(np.arange(len(y)), row.astype(np.int64))
            try:
                values.append(float(fn(y[idx], p[idx])))
            except ValueError:  # e.g. scikit-learn's AUC on a resample with one class
                values.append(np.nan)
    return np.asarray(values)


def bootstrap_ci(
    y_true: Any,
    proba: Any,
    metric: str | MetricFn,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    groups: Sequence[Any] | None = None,
    *,
    task: str = "binary",
    positive_class: int = 1,
    threshold: float | None = None,
    n_bins: int = 10,
) -> tuple[float | None, float | None, float | None]:
    """(point, low, high): the metric on all samples and its ``1 - alpha`` percentile interval.

    `metric` is a metric name of `task` (see ``compute_metrics``; fast, vectorised) or a function
    ``fn(y_true, proba) -> float`` called once per resample (a ValueError counts as undefined).
    """
    check_bootstrap_args(n_boot, alpha)
    if callable(metric):
        y, p = np.asarray(y_true), np.asarray(proba)
        if len(y) != len(p) or len(y) == 0:
            raise InvalidDataset(
                f"y_true ({len(y)}) and proba ({len(p)}) need the same, non-zero length"
            )
        single_label = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)
        strata = y.ravel() if stratified and single_label else None
        point = float(metric(y, p))
        blocks = resample_weights(len(y), int(n_boot), seed, strata, groups)
        low, high, _ = percentile_interval(_callable_distribution(metric, y, p, blocks), alpha)
        return _finite(point), low, high
    out = metrics_with_ci(
        y_true, proba, task, positive_class=positive_class, threshold=threshold, names=[metric],
        n_boot=n_boot, alpha=alpha, seed=seed, stratified=stratified, groups=groups, n_bins=n_bins,
    )[metric]
    return out["value"], out["ci_low"], out["ci_high"]


def metrics_with_ci(
    y_true: Any,
    proba: Any,
    task: str,
    positive_class: int = 1,
    threshold: float | Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    groups: Sequence[Any] | None = None,
    n_bins: int = 10,
) -> dict[str, dict[str, float | int | None]]:
    """``{name: {"value", "ci_low", "ci_high", "n_valid"}}`` for `names` (default: headline).

    All metrics share the same resamples. Values are JSON-ready (float or None).
    """
    check_bootstrap_args(n_boot, alpha)
    problem = check_inputs(y_true, proba, task, positive_class, threshold)
    names = check_metric_names(
        problem.task, HEADLINE_METRICS[problem.task] if names is None else names
    )
    point, _ = weighted_metrics(problem, np.ones((1, problem.n)), names, n_bins)
    strata = problem.y if stratified and problem.task != "multilabel" else None
    dist: dict[str, list[np.ndarray]] = {m: [] for m in names}
    for w in resample_weights(problem.n, int(n_boot), seed, strata, groups):
        values, _ = weighted_metrics(problem, w, names, n_bins)
        for m in names:
            dist[m].append(values[m])
    result = {}
    for m in names:
        low, high, n_valid = percentile_interval(np.concatenate(dist[m]), alpha)
        result[m] = {
            "value": _finite(point[m][0]), "ci_low": low, "ci_high": high, "n_valid": n_valid
        }
    return result
