"""Hyperparameter search for classical pipelines: on a validation split or by inner CV.

Both searches run on feature matrices that were extracted once, so a grid of 12 points costs
12 classifier fits, not 12 feature extractions. Default grids per model are small and sensible
for a few hundred to a few thousand images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import get_scorer, roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, ParameterGrid, StratifiedKFold
from sklearn.utils._param_validation import InvalidParameterError

from medsight.errors import InvalidConfig, InvalidDataset

log = logging.getLogger(__name__)

DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "decision_tree": {"max_depth": [3, 5, 8, None], "min_samples_leaf": [1, 5]},
    "random_forest": {"max_features": ["sqrt", 0.2], "min_samples_leaf": [1, 3]},
    "svm_rbf": {"C": [0.1, 1.0, 10.0, 100.0]},
    "svm_linear": {"C": [0.001, 0.01, 0.1, 1.0]},
    "logistic_regression": {"C": [0.001, 0.01, 0.1, 1.0, 10.0]},
    "gradient_boosting": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]},
    "knn": {"n_neighbors": [3, 5, 11, 21], "weights": ["uniform", "distance"]},
}
SEARCH_METHODS = ("auto", "val", "inner_cv")
Scorer = Any  # callable(estimator, x, y) -> float, higher is better


def auc_score(estimator: BaseEstimator, x: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of `estimator` on (x, y) for any task: binary, one-vs-rest macro for multiclass
    and ordinal, macro over labels for multilabel (whose (N, L) probabilities scikit-learn's
    ``"roc_auc"`` scorer does not handle)."""
    proba = np.asarray(estimator.predict_proba(x), dtype=np.float64)
    if y.ndim == 2:
        return float(roc_auc_score(y, proba, average="macro"))
    if proba.shape[1] == 2:
        return float(roc_auc_score(y == estimator.classes_[1], proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=estimator.classes_))


def make_scorer(scoring: str) -> Scorer:
    """``"roc_auc"`` works for every task (`auc_score`); any other name is a scikit-learn scorer."""
    if scoring in ("roc_auc", "roc_auc_ovr"):
        return auc_score
    try:
        return get_scorer(scoring)
    except ValueError as exc:
        raise InvalidConfig(f"unknown search scoring {scoring!r}: {exc}") from None


@dataclass
class SearchResult:
    """The fitted best head, its parameters and the score of every grid point."""

    best_estimator: BaseEstimator
    best_params: dict[str, Any]
    best_score: float
    method: str
    scoring: str
    table: list[dict[str, Any]] = field(default_factory=list)


def search_on_val(
    head: BaseEstimator,
    grid: dict[str, list[Any]],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    scoring: str,
) -> SearchResult:
    """Fit each grid point on train, score it on val, keep the best (first one on ties).

    The kept estimator is the one fitted on train at the best point, i.e. "refit best on train".
    """
    scorer = make_scorer(scoring)
    best: tuple[float, dict[str, Any], BaseEstimator] | None = None
    table: list[dict[str, Any]] = []
    for params in ParameterGrid(grid):
        est = clone(head).set_params(**params)
        est.fit(x_train, y_train)  # InvalidParameterError (a bad grid value) passes through
        try:
            score = float(scorer(est, x_val, y_val))
        except ValueError as exc:
            raise InvalidDataset(
                f"cannot score {scoring!r} on the validation split ({exc}); it may hold a single "
                "class: give a larger val split or search with method 'inner_cv'"
            ) from exc
        table.append({"params": params, "score": score})
        if best is None or score > best[0]:
            best = (score, params, est)
    if best is None:
        raise InvalidConfig("hyperparameter grid is empty")
    log.info("search on val (%s): best %s = %.4f", scoring, best[1], best[0])
    return SearchResult(best[2], best[1], best[0], "val", scoring, table)


def search_inner_cv(
    head: BaseEstimator,
    grid: dict[str, list[Any]],
    x: np.ndarray,
    y: np.ndarray,
    scoring: str,
    cv: int = 3,
    seed: int = 0,
    n_jobs: int = 1,
) -> SearchResult:
    """GridSearchCV over the train features with (stratified, shuffled) inner folds."""
    if y.ndim == 1:
        folds: Any = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    else:
        folds = KFold(n_splits=cv, shuffle=True, random_state=seed)
    gs = GridSearchCV(
        head, grid, scoring=make_scorer(scoring), cv=folds, refit=True, n_jobs=n_jobs,
        error_score="raise",
    )
    try:
        gs.fit(x, y)
    except InvalidParameterError:
        raise
    except ValueError as exc:
        raise InvalidDataset(f"inner {cv}-fold search failed: {exc}") from exc
    table = [
        {"params": p, "score": float(s)}
        for p, s in zip(gs.cv_results_["params"], gs.cv_results_["mean_test_score"], strict=True)
    ]
    log.info("inner %d-fold search (%s): best %s = %.4f", cv, scoring, gs.best_params_,
             gs.best_score_)
    return SearchResult(
        gs.best_estimator_, dict(gs.best_params_), float(gs.best_score_), "inner_cv", scoring, table
    )
