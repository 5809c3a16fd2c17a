"""Metrics for many resamples at once, each resample being a row of sample weights.

A bootstrap resample equals the original samples weighted by how often each was drawn, so every
metric here takes weights ``w`` of shape ``(B, N)`` and returns ``B`` values in one vectorised
pass (``np.ones((1, N))`` gives the ordinary metric). This is why 1000 resamples cost
milliseconds rather than 1000 scikit-learn calls; the tests check each metric against
scikit-learn. Undefined values (e.g. AUC when one class is absent) are NaN.

Definitions (``compute_metrics`` documents them for users): AUC by the Mann-Whitney statistic
(ties count one half); macro averages over the classes present in the labels or predictions,
skipping undefined per-class values (scikit-learn's ``zero_division=np.nan``); Cohen's kappa on
all K classes, quadratic-weighted for ordinal tasks; Brier score as the mean squared error of the
positive-class probability (binary) or the sum over classes (multiclass); log loss with
probabilities clipped to machine epsilon; ECE as in ``evaluate.calibration``.
"""

from __future__ import annotations

import numpy as np

from medsight.errors import InvalidConfig
from medsight.evaluate.calibration import bin_edges, bin_index
from medsight.evaluate.inputs import Problem

COMMON = (
    "acc", "balanced_acc", "auc", "sensitivity", "specificity", "ppv", "npv", "f1", "kappa",
    "ece", "brier", "log_loss",
)
METRICS: dict[str, tuple[str, ...]] = {
    "binary": COMMON,
    "multiclass": COMMON,
    "ordinal": (*COMMON, "mae"),
    "multilabel": (*COMMON, "subset_acc"),
}
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "ppv", "npv", "f1"),
    "multiclass": ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1", "kappa"),
    "ordinal": ("auc", "acc", "balanced_acc", "kappa", "mae"),
    "multilabel": ("auc", "acc", "subset_acc", "sensitivity", "specificity", "f1"),
}
EPS = np.finfo(np.float64).eps


def check_metric_names(task: str, names: list[str] | tuple[str, ...]) -> list[str]:
    """`names` as a list after checking each is a metric of `task`; InvalidConfig otherwise."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [m for m in names if m not in METRICS[task]]
    if unknown or not names:
        raise InvalidConfig(
            f"unknown metric(s) {unknown} for a {task} task; known: {METRICS[task]}"
        )
    return names


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def nanmean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean ignoring NaN; NaN (without a warning) where every value is NaN."""
    ok = ~np.isnan(a)
    return ratio(np.where(ok, a, 0.0).sum(axis=axis), ok.sum(axis=axis))


def weighted_counts(
    w: np.ndarray, codes: np.ndarray, n_codes: int, values: np.ndarray | None = None
) -> np.ndarray:
    """``(B, n_codes)``: per resample, the summed weight (times `values`) of samples per code."""
    b = w.shape[0]
    ww = w if values is None else w * values[None, :]
    idx = codes[None, :] + n_codes * np.arange(b)[:, None]
    return np.bincount(idx.ravel(), weights=ww.ravel(), minlength=b * n_codes).reshape(b, n_codes)


def weighted_mean(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per resample, the weighted mean of per-sample `values`."""
    return ratio(w @ values, w.sum(axis=1))


def weighted_auc(w: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC per resample: P(score_pos > score_neg) + P(tie) / 2 over weighted pairs."""
    uniq, inv = np.unique(score, return_inverse=True)
    pos = weighted_counts(w[:, positive], inv[positive], len(uniq))
    neg = weighted_counts(w[:, ~positive], inv[~positive], len(uniq))
    below = np.cumsum(neg, axis=1) - neg
    return ratio((pos * (below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))


def confusion(w: np.ndarray, y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """``(B, K, K)`` weighted confusion matrices, rows = true class, columns = predicted."""
    return weighted_counts(w, y * k + pred, k * k).reshape(-1, k, k)


def class_rates(conf: np.ndarray) -> dict[str, np.ndarray]:
    """Per class one-vs-rest counts and rates, each ``(B, K)``, from confusion matrices."""
    tp = np.diagonal(conf, axis1=1, axis2=2)
    support = conf.sum(axis=2)
    predicted = conf.sum(axis=1)
    n = conf.sum(axis=(1, 2))[:, None]
    fp, fn = predicted - tp, support - tp
    tn = n - tp - fp - fn
    return {
        "support": support, "predicted": predicted, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": ratio(tp, predicted),
        "recall": ratio(tp, support),
        "specificity": ratio(tn, tn + fp),
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def kappa(conf: np.ndarray, weighting: str | None = None) -> np.ndarray:
    """Cohen's kappa per resample; ``weighting`` None, ``"linear"`` or ``"quadratic"``."""
    k = conf.shape[1]
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    if weighting is None:
        wt = (i != j).astype(float)
    else:
        wt = np.abs(i - j).astype(float) ** (2 if weighting == "quadratic" else 1)
    n = conf.sum(axis=(1, 2))
    expected = ratio(conf.sum(axis=2)[:, :, None] * conf.sum(axis=1)[:, None, :], n[:, None, None])
    return 1.0 - ratio((wt * conf).sum(axis=(1, 2)), (wt * expected).sum(axis=(1, 2)))


def weighted_ece(w: np.ndarray, hit: np.ndarray, p: np.ndarray, n_bins: int) -> np.ndarray:
    """Expected calibration error per resample (equal-width bins on [0, 1])."""
    idx = bin_index(p, bin_edges(p, n_bins, "uniform"))
    gap = weighted_counts(w, idx, n_bins, hit.astype(float)) - weighted_counts(w, idx, n_bins, p)
    return ratio(np.abs(gap).sum(axis=1), w.sum(axis=1))


def _neg_log(p_true: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(p_true, EPS, 1 - EPS))


def _binary(w: np.ndarray, y: np.ndarray, p: np.ndarray, pred: np.ndarray, pos: int,
            names: set[str], n_bins: int) -> tuple[dict[str, np.ndarray], dict]:
    """Binary metrics with classes {0, 1}; `p` = P(class pos), `pos` = the positive class."""
    conf = confusion(w, y, pred, 2)
    rates = class_rates(conf)
    y_pos = y == pos
    out = {
        "acc": ratio(np.trace(conf, axis1=1, axis2=2), conf.sum(axis=(1, 2))),
        "balanced_acc": nanmean(rates["recall"]),
        "sensitivity": rates["recall"][:, pos],
        "specificity": rates["recall"][:, 1 - pos],
        "ppv": rates["precision"][:, pos],
        "npv": rates["precision"][:, 1 - pos],
        "f1": rates["f1"][:, pos],
        "kappa": kappa(conf),
    }
    if "auc" in names:
        out["auc"] = weighted_auc(w, y_pos, p)
    if "ece" in names:
        out["ece"] = weighted_ece(w, y_pos, p, n_bins)
    if "brier" in names:
        out["brier"] = weighted_mean(w, (p - y_pos) ** 2)
    if "log_loss" in names:
        out["log_loss"] = weighted_mean(w, _neg_log(np.where(y_pos, p, 1 - p)))
    return out, {"confusion": conf, "rates": rates}


def _single_label(problem: Problem, w: np.ndarray, names: set[str], n_bins: int, detail: bool):
    k, y, proba, pred = problem.n_classes, problem.y, problem.proba, problem.pred
    if problem.task == "binary":
        pos = problem.positive_class
        out, info = _binary(w, y, problem.p_pos, pred, pos, names, n_bins)
    else:
        conf = confusion(w, y, pred, k)
        rates = class_rates(conf)
        present = (rates["support"] + rates["predicted"]) > 0
        out = {
            "acc": ratio(np.trace(conf, axis1=1, axis2=2), conf.sum(axis=(1, 2))),
            "balanced_acc": nanmean(rates["recall"]),
            "sensitivity": nanmean(rates["recall"]),
            "specificity": nanmean(np.where(present, rates["specificity"], np.nan)),
            "ppv": nanmean(rates["precision"]),
            "npv": nanmean(np.where(present, rates["npv"], np.nan)),
            "f1": nanmean(rates["f1"]),
            "kappa": kappa(conf, "quadratic" if problem.task == "ordinal" else None),
        }
        info = {"confusion": conf, "rates": rates}
        if "ece" in names:
            out["ece"] = weighted_ece(w, pred == y, proba.max(axis=1), n_bins)
        if "brier" in names:
            onehot = np.eye(k)[y]
            out["brier"] = weighted_mean(w, ((proba - onehot) ** 2).sum(axis=1))
        if "log_loss" in names:
            out["log_loss"] = weighted_mean(w, _neg_log(proba[np.arange(len(y)), y]))
        if "mae" in names and problem.task == "ordinal":
            out["mae"] = weighted_mean(w, np.abs(pred - y).astype(float))
    if "auc" in names and (problem.task != "binary" or detail):
        per_class = np.column_stack([weighted_auc(w, y == c, proba[:, c]) for c in range(k)])
        info["auc"] = per_class
        if problem.task != "binary":
            out["auc"] = nanmean(per_class)
    return out, info


def _multilabel(problem: Problem, w: np.ndarray, names: set[str], n_bins: int):
    y, proba, pred = problem.y, problem.proba, problem.pred
    per_label = [
        _binary(w, y[:, j], proba[:, j], pred[:, j], 1, names, n_bins) for j in range(y.shape[1])
    ]
    keys = per_label[0][0].keys()
    stacked = {m: np.column_stack([res[m] for res, _ in per_label]) for m in keys}
    out = {m: nanmean(v) for m, v in stacked.items()}
    if "subset_acc" in names:
        out["subset_acc"] = weighted_mean(w, (pred == y).all(axis=1).astype(float))
    info = {
        "confusion": np.stack([inf["confusion"] for _, inf in per_label], axis=1),
        "per_label": stacked,
        "rates": {r: np.column_stack([inf["rates"][r][:, 1] for _, inf in per_label])
                  for r in per_label[0][1]["rates"]},
    }
    return out, info


def weighted_metrics(
    problem: Problem,
    w: np.ndarray,
    names: list[str] | tuple[str, ...] | None = None,
    n_bins: int = 10,
    detail: bool = False,
) -> tuple[dict[str, np.ndarray], dict]:
    """Scalar metrics ``{name: (B,)}`` for weights ``w`` ``(B, N)``, plus per-class detail.

    Detail (for one resample it feeds ``compute_metrics``' tables): ``confusion`` ``(B, K, K)`` (or
    ``(B, L, 2, 2)`` multilabel), ``rates`` ``{name: (B, K)}``, ``auc`` ``(B, K)`` per class, and
    for multilabel ``per_label`` ``{metric: (B, L)}``.
    """
    wanted = set(METRICS[problem.task] if names is None else names)
    w = np.asarray(w, dtype=np.float64)
    if problem.task == "multilabel":
        out, info = _multilabel(problem, w, wanted, n_bins)
    else:
        out, info = _single_label(problem, w, wanted, n_bins, detail)
    return {m: out[m] for m in METRICS[problem.task] if m in wanted and m in out}, info
