"""Validate and normalise (labels, probabilities, task) once, for every metric and test to share.

Conventions: single-label tasks take ``y_true`` as class indices ``(N,)`` (``(N, 1)`` is accepted,
as MedMNIST stores it) and ``proba`` as ``(N, K)`` class probabilities whose rows sum to 1. For a
binary task ``proba`` may also be ``(N,)``, the probability of ``positive_class``. Multilabel
takes 0/1 flags ``(N, L)`` and per-label probabilities ``(N, L)``.

Predictions: binary -> ``positive_class`` when ``P(positive) >= threshold`` (default 0.5);
multiclass and ordinal -> the most probable class (``threshold`` must be None); multilabel ->
each label on when its probability ``>= threshold`` (a number or one per label; default 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.data.dataset import Task
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.models.threshold import check_probabilities

SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Problem:
    """Checked inputs: labels, probabilities, predictions and what they mean."""

    task: str
    y: np.ndarray  # (N,) int class index, or (N, L) int 0/1 flags
    proba: np.ndarray  # (N, K) or (N, L) float64
    pred: np.ndarray  # like y
    positive_class: int | None
    threshold: float | np.ndarray | None

    @property
    def n(self) -> int:
        return int(len(self.y))

    @property
    def n_classes(self) -> int:
        return int(self.proba.shape[1])

    @property
    def y_pos(self) -> np.ndarray:
        """Binary: True where the sample belongs to the positive class."""
        return self.y == self.positive_class

    @property
    def p_pos(self) -> np.ndarray:
        """Binary: probability of the positive class."""
        return self.proba[:, self.positive_class]


def parse_task(task: Any) -> str:
    """The task's value (``"binary"``, ...); InvalidConfig for anything else."""
    try:
        return Task(task.value if isinstance(task, Task) else task).value
    except ValueError:
        raise InvalidConfig(
            f"unknown task {task!r}; expected one of {[t.value for t in Task]}"
        ) from None


def _as_float(a: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataset(f"{what} must be numeric: {exc}") from None
    if not np.isfinite(arr).all():
        raise InvalidDataset(f"{what} contains NaN or infinity")
    return arr


def _as_labels(a: Any, what: str) -> np.ndarray:
    arr = _as_float(a, what)
    if (arr != np.round(arr)).any():
        raise InvalidDataset(f"{what} must hold integer class labels, got non-integer values")
    return arr.astype(np.int64)


def check_inputs(
    y_true: Any,
    proba: Any,
    task: Any,
    positive_class: int | None = 1,
    threshold: float | Any | None = None,
) -> Problem:
    """Validate inputs (module doc), derive predictions; InvalidDataset/InvalidConfig on error."""
    task = parse_task(task)
    p = check_probabilities(_as_float(proba, "proba"))
    y = _as_labels(y_true, "y_true")
    if len(y) == 0:
        raise InvalidDataset("cannot compute metrics on zero samples")
    if len(y) != len(p):
        raise InvalidDataset(f"y_true has {len(y)} samples but proba has {len(p)}")
    if task == "multilabel":
        return _multilabel(y, p, threshold)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InvalidDataset(f"y_true for a {task} task must be (N,) class indices, got {y.shape}")
    if task == "binary":
        if positive_class not in (0, 1):
            raise InvalidConfig(
                f"positive_class of a binary task must be 0 or 1, got {positive_class!r}"
            )
        if p.ndim == 1:
            p = np.column_stack([1 - p, p]) if positive_class == 1 else np.column_stack([p, 1 - p])
    else:
        if threshold is not None:
            raise InvalidConfig(
                f"a {task} task predicts the most probable class; threshold must be None"
            )
        positive_class = None
    if p.ndim != 2 or p.shape[1] < 2 or (task == "binary" and p.shape[1] != 2):
        raise InvalidDataset(
            f"proba for a {task} task must be (N, K) class probabilities"
            f"{' with K = 2' if task == 'binary' else ''}; got shape {p.shape}"
        )
    k = p.shape[1]
    if y.min() < 0 or y.max() >= k:
        raise InvalidDataset(f"y_true labels must be in 0..{k - 1} to match proba's {k} columns; "
                             f"got {sorted(set(y.tolist()) - set(range(k)))[:5]}")
    sums = p.sum(axis=1)
    if np.abs(sums - 1).max() > SUM_TOLERANCE:
        worst = int(np.argmax(np.abs(sums - 1)))
        raise InvalidDataset(f"proba rows must sum to 1; row {worst} sums to {sums[worst]:.4g}")
    if task == "binary":
        thr = 0.5 if threshold is None else float(threshold)
        if not np.isfinite(thr):
            raise InvalidConfig(f"threshold must be a finite number, got {threshold!r}")
        pred = np.where(p[:, positive_class] >= thr, positive_class, 1 - positive_class)
        return Problem(task, y, p, pred, int(positive_class), thr)
    return Problem(task, y, p, p.argmax(axis=1), None, None)


def _multilabel(y: np.ndarray, p: np.ndarray, threshold: Any) -> Problem:
    if y.ndim != 2 or p.shape != y.shape:
        raise InvalidDataset(
            f"multilabel y_true and proba must both be (N, L); got {y.shape} and {p.shape}"
        )
    if not np.isin(y, (0, 1)).all():
        raise InvalidDataset("multilabel y_true must hold 0/1 flags")
    thr = np.full(y.shape[1], 0.5) if threshold is None else np.asarray(threshold, dtype=float)
    thr = np.broadcast_to(thr, (y.shape[1],)).astype(np.float64) if thr.ndim == 0 else thr
    if thr.shape != (y.shape[1],) or not np.isfinite(thr).all():
        raise InvalidConfig(f"multilabel threshold must be a number or {y.shape[1]} numbers")
    return Problem("multilabel", y, p, (p >= thr).astype(np.int64), None, thr)
