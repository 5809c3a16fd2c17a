"""Operating point of a binary classifier: choose a probability threshold and apply it.

The threshold is chosen on validation data (never the test set) and stored with the model;
a sample is called positive when ``P(positive) >= threshold``. Candidates are the distinct
predicted probabilities (the points of the ROC curve), so the returned threshold reproduces the
chosen sensitivity/specificity exactly on the data it was chosen on. Estimators choose theirs
with `validation_threshold` while fitting; evaluation uses the same functions (it sits above).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from medsight.errors import InvalidConfig, InvalidDataset

METHODS = ("youden", "target_sensitivity", "target_specificity")
# what an estimator's ``threshold_method`` may be (None: keep 0.5)
ESTIMATOR_METHODS = ("youden", "target_sensitivity", None)
log = logging.getLogger(__name__)


def check_probabilities(p: np.ndarray, what: str = "proba") -> np.ndarray:
    """Probabilities must lie in [0, 1] (tiny float excursions are clipped)."""
    if p.size and (p.min() < -1e-6 or p.max() > 1 + 1e-6):
        raise InvalidDataset(
            f"{what} must be probabilities in [0, 1]; got values in [{p.min():.4g}, {p.max():.4g}] "
            "(apply softmax/sigmoid to scores first)"
        )
    return np.clip(p, 0.0, 1.0)


def check_estimator_method(method: Any) -> None:
    """InvalidConfig unless `method` is one an estimator's ``threshold_method`` may take."""
    if method not in ESTIMATOR_METHODS:
        raise InvalidConfig(f"threshold_method must be one of {ESTIMATOR_METHODS}, got {method!r}")


def validation_threshold(y_true: Any, p_pos: Any, method: str | None, target: float = 0.9,
                         positive_class: int = 1) -> float:
    """An estimator's decision threshold, chosen by `method` on its validation predictions.

    Rows whose probability is NaN (unreadable images) are left out; 0.5 when `method` is None
    or the readable validation images hold one class only (logged).
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(p_pos, dtype=np.float64).ravel()
    ok = ~np.isnan(p)
    y, p = y[ok], p[ok]
    if method is None:
        return 0.5
    positive = y == positive_class
    if positive.all() or not positive.any():
        log.warning("validation split holds one class only: decision threshold stays 0.5")
        return 0.5
    return choose_threshold(y, p, method, target, positive_class)


def choose_threshold(
    y_true: Any,
    p_pos: Any,
    method: str = "youden",
    target: float = 0.9,
    positive_class: int = 1,
) -> float:
    """Threshold on P(positive) by `method`.

    ``"youden"`` maximises sensitivity + specificity - 1; ``"target_sensitivity"`` is the highest
    threshold whose sensitivity reaches `target` (best specificity under that constraint);
    ``"target_specificity"`` the lowest threshold whose specificity reaches `target`.
    `y_true` holds class labels; samples equal to `positive_class` are the positives.
    """
    if method not in METHODS:
        raise InvalidConfig(f"threshold method must be one of {METHODS}, got {method!r}")
    if method != "youden" and not 0.0 <= float(target) <= 1.0:
        raise InvalidConfig(f"target must be in [0, 1], got {target}")
    y = np.asarray(y_true).ravel() == positive_class
    p = check_probabilities(np.asarray(p_pos, dtype=np.float64).ravel(), "p_pos")
    if len(y) != len(p):
        raise InvalidDataset(f"y_true has {len(y)} samples but p_pos has {len(p)}")
    if y.all() or not y.any():
        raise InvalidDataset(
            f"choosing a threshold needs positive (class {positive_class}) and negative samples; "
            f"got {int(y.sum())} positive of {len(y)}"
        )
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]  # drop the "nothing positive" point (threshold inf)
    if method == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    if method == "target_sensitivity":
        return float(thr[int(np.argmax(tpr >= float(target) - 1e-12))])
    ok = np.flatnonzero(1.0 - fpr >= float(target) - 1e-12)
    if len(ok) == 0:
        raise InvalidDataset(f"no threshold reaches specificity {target} on these samples")
    return float(thr[ok[-1]])


def apply_threshold(p_pos: Any, threshold: float, positive_class: int = 1) -> np.ndarray:
    """Class labels: `positive_class` where ``p_pos >= threshold``, the other class elsewhere."""
    p = np.asarray(p_pos, dtype=np.float64)
    if positive_class not in (0, 1):
        raise InvalidConfig(f"positive_class must be 0 or 1, got {positive_class!r}")
    return np.where(p >= float(threshold), positive_class, 1 - positive_class).astype(np.int64)
