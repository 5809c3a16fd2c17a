"""Classical classifiers (tree, forest, SVM, logistic, boosting, kNN) under the estimator protocol.

`ClassicalClassifier` turns a dataset into a preprocessed array (`load_arrays`, replaying the one
saved `Preprocess` chain), extracts features once per fit (`medsight.features.make_features`)
and fits a scikit-learn ``Pipeline(features -> scaler -> classifier)``. Hyperparameters can be
searched on the validation split or by inner cross-validation; the binary decision threshold is
chosen on the validation split.

Probabilities: SVMs have no native ones, so they are always wrapped in
``CalibratedClassifierCV(cv=3)``: Platt scaling (``method="sigmoid"``, the default through
``calibrate="auto"``) or isotonic regression, fitted on held-out folds of the training set, the
three calibrated copies averaged. ``svm_rbf`` is an ``SVC(kernel="rbf")``, ``svm_linear`` a
``LinearSVC``. ``SVC(probability=True)`` (libsvm's internal Platt scaling) is not used: it is
deprecated since scikit-learn 1.9. ``calibrate="sigmoid"``/``"isotonic"`` wraps any other model
too; ``None`` leaves non-SVM models uncalibrated. Multilabel tasks use one-vs-rest (one binary
classifier per label); ordinal tasks are treated as multiclass (the grade order is ignored).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import sklearn
import sklearn.exceptions
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils._param_validation import InvalidParameterError

from medsight.data.dataset import Dataset, Task
from medsight.errors import BundleIntegrityError, InvalidConfig, InvalidDataset
from medsight.features import make_features
from medsight.jsonable import jsonable
from medsight.models.base import MedsightEstimator
from medsight.models.inputs import LoadedArrays, load_arrays, predict_in_chunks
from medsight.models.search import (
    DEFAULT_GRIDS,
    SEARCH_METHODS,
    SearchResult,
    search_inner_cv,
    search_on_val,
)
from medsight.models.threshold import check_estimator_method, validation_threshold
from medsight.preprocess import Preprocess
from medsight.preprocess.chain import plain_spec

log = logging.getLogger(__name__)

MODELS = (
    "decision_tree",
    "random_forest",
    "svm_rbf",
    "svm_linear",
    "logistic_regression",
    "gradient_boosting",
    "knn",
)
_SCALED = {"svm_rbf", "svm_linear", "logistic_regression", "knn"}
_SVMS = {"svm_rbf", "svm_linear"}
_CALIBRATIONS = ("auto", "sigmoid", "isotonic", None)
MODEL_FILE = "classical.joblib"
STATE_FILE = "classical.json"
PREPROCESS_FILE = "preprocess.json"
PREDICT_CHUNK = 2048  # records decoded at once when predicting: bounded memory on big sets


class ClassicalClassifier(MedsightEstimator):
    """A scikit-learn classifier on hand-crafted image features (see the module docstring).

    Unreadable images are skipped (and logged) when fitting; at prediction their probability
    rows are NaN, which the evaluation schemes leave out and list. Fitted attributes:
    ``pipeline_`` (features -> scaler -> classifier), ``preprocess_``, ``threshold_``,
    ``search_``/``best_params_`` (with `search`), ``skipped_`` (unreadable training images).

    Parameters
    ----------
    model: one of `MODELS`.
    features: feature names for `make_features` (e.g. ``["hog", "lbp"]``); an empty list feeds
        the flattened pixels.
    feature_params: keyword arguments for `make_features`.
    preprocess: the preprocessing chain, as a config list (``[{"resize": {"size": [64, 64]}}]``)
        or a `Preprocess` JSON dict; None applies no preprocessing.
    model_params: constructor arguments of the classifier (e.g. ``{"C": 10}``).
    search: None (no search) or ``{"grid": {...} | None (default grid), "method": "auto" | "val"
        | "inner_cv", "cv": 3, "scoring": "roc_auc"}``; "auto" uses val when given.
    class_weight: passed to classifiers that take it (e.g. ``"balanced"``).
    calibrate: "auto" | "sigmoid" | "isotonic" | None (not for SVMs), see the module docstring.
    threshold_method: "youden" | "target_sensitivity" | None (keep 0.5); binary tasks, needs val.
    target_sensitivity: the sensitivity aimed at by ``threshold_method="target_sensitivity"``.
    seed: random state of every randomised part.
    n_jobs: parallel jobs for forests, kNN and inner-CV search.
    workers: threads decoding images.
    """

    kind: ClassVar[str] = "classical"
    run_only: ClassVar[frozenset[str]] = frozenset({"n_jobs", "workers"})

    def __init__(
        self,
        model: str = "svm_rbf",
        features: list[str] | tuple[str, ...] = ("hog",),
        feature_params: dict[str, Any] | None = None,
        preprocess: list[Any] | dict[str, Any] | None = None,
        model_params: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        class_weight: str | dict[str, float] | None = None,
        calibrate: str | None = "auto",
        threshold_method: str | None = "youden",
        target_sensitivity: float = 0.9,
        seed: int = 0,
        n_jobs: int = 1,
        workers: int = 1,
    ):
        self.model = model
        self.features = features
        self.feature_params = feature_params
        self.preprocess = preprocess
        self.model_params = model_params
        self.search = search
        self.class_weight = class_weight
        self.calibrate = calibrate
        self.threshold_method = threshold_method
        self.target_sensitivity = target_sensitivity
        self.seed = seed
        self.n_jobs = n_jobs
        self.workers = workers

    # -- construction --------------------------------------------------------------------
    def validate_params(self) -> None:
        """Check every parameter (InvalidConfig naming the bad one); `fit` calls it first."""
        plain_spec(self.preprocess)
        if self.model not in MODELS:
            raise InvalidConfig(f"unknown classical model {self.model!r}; choose one of {MODELS}")
        if self.calibrate not in _CALIBRATIONS:
            raise InvalidConfig(f"calibrate must be one of {_CALIBRATIONS}, got {self.calibrate!r}")
        if self.calibrate is None and self.model in _SVMS:
            raise InvalidConfig(
                f"{self.model} gives probabilities only through calibration: use calibrate="
                "'auto'/'sigmoid'/'isotonic' (scikit-learn 1.9 deprecates SVC(probability=True))"
            )
        check_estimator_method(self.threshold_method)
        if self.class_weight is not None and self.model == "knn":
            raise InvalidConfig("knn takes no class_weight; drop it or choose another model")
        if self.search is not None:
            if not isinstance(self.search, dict):
                raise InvalidConfig(f"search must be a mapping or None, got {self.search!r}")
            unknown = set(self.search) - {"grid", "method", "cv", "scoring"}
            if unknown:
                raise InvalidConfig(
                    f"search has unknown key(s) {sorted(unknown)}; use grid, method, cv, scoring"
                )
            if self.search.get("method", "auto") not in SEARCH_METHODS:
                raise InvalidConfig(
                    f"search method must be one of {SEARCH_METHODS}, got {self.search['method']!r}"
                )

    def _classifier(self, params: dict[str, Any]) -> BaseEstimator:
        """The bare classifier for `self.model` with defaults overridden by `params`."""
        cw = {"class_weight": self.class_weight} if self.class_weight is not None else {}
        rs = {"random_state": self.seed}
        m = self.model
        if m == "decision_tree":
            return DecisionTreeClassifier(**{**rs, **cw, **params})
        if m == "random_forest":
            base = {"n_estimators": 200, "n_jobs": self.n_jobs, **rs, **cw}
            return RandomForestClassifier(**{**base, **params})
        if m == "logistic_regression":
            return LogisticRegression(**{"max_iter": 5000, "C": 1.0, **rs, **cw, **params})
        if m == "gradient_boosting":
            return HistGradientBoostingClassifier(**{**rs, **cw, **params})
        if m == "knn":
            return KNeighborsClassifier(**{"n_jobs": self.n_jobs, **params})
        if m == "svm_rbf":
            return SVC(**{"kernel": "rbf", "gamma": "scale", **rs, **cw, **params})
        return LinearSVC(**{"max_iter": 20000, **rs, **cw, **params})

    def _calibration_method(self) -> str | None:
        if self.calibrate == "auto":
            return "sigmoid" if self.model in _SVMS else None
        return self.calibrate

    def _head(self, task: Task, y: np.ndarray) -> tuple[Pipeline, str]:
        """(scaler -> classifier) pipeline and the parameter prefix of the bare classifier."""
        try:
            clf: BaseEstimator = self._classifier(dict(self.model_params or {}))
        except TypeError as exc:
            raise InvalidConfig(f"model_params for {self.model}: {exc}") from exc
        prefix = "clf"
        method = self._calibration_method()
        if method is not None:
            clf = CalibratedClassifierCV(clf, method=method, cv=_calibration_folds(y))
            prefix += "__estimator"
        if task is Task.MULTILABEL:
            clf = OneVsRestClassifier(clf)
            prefix = "clf__estimator" + prefix[len("clf"):]
        scale = StandardScaler() if self.model in _SCALED else "passthrough"
        return Pipeline([("scale", scale), ("clf", clf)]), prefix

    def _feature_step(self) -> BaseEstimator:
        if not self.features:
            return FunctionTransformer(_flatten)
        return make_features(list(self.features), **(self.feature_params or {}))

    # -- protocol hooks -----------------------------------------------------------------
    def _fit(self, train: Dataset, val: Dataset | None) -> None:
        self.preprocess_ = _build_preprocess(self.preprocess)
        train = train.labelled()
        arrays = self._load(train)
        y = _targets(train, arrays)
        if self.task_ is not Task.MULTILABEL and len(np.unique(y)) < 2:
            raise InvalidDataset(
                f"{train.name}: the readable training images hold a single class "
                f"({self.classes_[int(y[0])]!r}); a classifier needs at least two"
            )
        self.skipped_ = list(arrays.errors)

        feats = self._feature_step()
        x_train = feats.fit_transform(arrays.x)  # features extracted once per fit
        x_val = y_val = None
        val = val.labelled() if val is not None else None
        if val is not None and len(val):
            val_arrays = self._load(val)
            x_val, y_val = feats.transform(val_arrays.x), _targets(val, val_arrays)

        head, prefix = self._head(self.task_, y)
        self.search_ = None
        try:
            if self.search is not None:
                self.search_ = self._run_search(head, prefix, x_train, y, x_val, y_val)
                head = self.search_.best_estimator
                self.best_params_ = {
                    k.removeprefix(prefix + "__"): v for k, v in self.search_.best_params.items()
                }
            else:
                head.fit(x_train, y)
        except InvalidParameterError as exc:  # a bad value in model_params or the search grid
            raise InvalidConfig(f"{self.model}: {exc}") from exc
        self.pipeline_ = Pipeline([("features", feats), *head.steps])
        self.n_features_ = int(np.asarray(x_train).shape[1])

        if self.task_ is Task.BINARY and x_val is not None and self.threshold_method:
            self.threshold_ = self._choose_threshold(head, x_val, y_val)

    def _predict_proba(self, dataset: Dataset) -> np.ndarray:
        def proba(x: np.ndarray) -> np.ndarray:
            return self._columns(self.pipeline_.predict_proba(x))

        return predict_in_chunks(dataset, self.preprocess_, proba, len(self.classes_),
                                 PREDICT_CHUNK, self.workers)

    def _save_state(self, directory: Path) -> None:
        joblib.dump(self.pipeline_, directory / MODEL_FILE)
        (directory / PREPROCESS_FILE).write_text(self.preprocess_.to_json())
        state = {
            "sklearn_version": sklearn.__version__,
            "preprocess_fingerprint": self.preprocess_.fingerprint(),
            "best_params": getattr(self, "best_params_", None),
            "n_features": self.n_features_,
        }
        (directory / STATE_FILE).write_text(json.dumps(jsonable(state), indent=2))

    def _load_state(self, directory: Path) -> None:
        for name in (MODEL_FILE, STATE_FILE, PREPROCESS_FILE):
            if not (directory / name).is_file():
                raise BundleIntegrityError(f"{directory}: missing {name} of a classical model")
        state = json.loads((directory / STATE_FILE).read_text())
        saved = state.get("sklearn_version")
        if saved != sklearn.__version__:
            msg = (
                f"{directory} was saved with scikit-learn {saved}, this is "
                f"{sklearn.__version__}: predictions may differ; refit or install {saved}"
            )
            log.warning(msg)
            warnings.warn(msg, UserWarning, stacklevel=3)
        text = (directory / PREPROCESS_FILE).read_text()
        self.preprocess_ = Preprocess.from_json(text, base_dir=directory)
        if self.preprocess_.fingerprint() != state.get("preprocess_fingerprint"):
            raise BundleIntegrityError(
                f"{directory}: {PREPROCESS_FILE} does not match the fingerprint recorded at save "
                "time; the preprocessing chain was edited"
            )
        with warnings.catch_warnings():  # our own version warning above says it once
            warnings.simplefilter("ignore", sklearn.exceptions.InconsistentVersionWarning)
            self.pipeline_ = joblib.load(directory / MODEL_FILE)
        self.n_features_ = state.get("n_features")
        if state.get("best_params") is not None:
            self.best_params_ = state["best_params"]
        self.skipped_ = []
        self.search_ = None

    # -- helpers ----------------------------------------------------------------------------
    def _load(self, dataset: Dataset) -> LoadedArrays:
        return load_arrays(dataset, self.preprocess_, workers=self.workers)

    def _columns(self, proba: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Probabilities with one column per class index, zeros for classes absent in train."""
        proba = np.asarray(proba, dtype=np.float64)
        if self.task_ is Task.MULTILABEL:
            return proba
        out = np.zeros((proba.shape[0], len(self.classes_)))
        out[:, np.asarray(self.pipeline_.classes_, dtype=int)] = proba
        return out

    def _run_search(
        self,
        head: Pipeline,
        prefix: str,
        x_train: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None,
        y_val: np.ndarray | None,
    ) -> SearchResult:
        spec = dict(self.search or {})
        grid = spec.get("grid") or DEFAULT_GRIDS[self.model]
        grid = {(k if "__" in k else f"{prefix}__{k}"): list(v) for k, v in grid.items()}
        scoring = str(spec.get("scoring", "roc_auc"))
        method = spec.get("method", "auto")
        if method == "auto":
            method = "val" if x_val is not None else "inner_cv"
        if method == "val":
            if x_val is None:
                raise InvalidConfig(
                    "search method 'val' needs a validation split: call fit(train, val) or use "
                    "method 'inner_cv'"
                )
            return search_on_val(head, grid, x_train, y, x_val, y_val, scoring)
        return search_inner_cv(
            head, grid, x_train, y, scoring, cv=int(spec.get("cv", 3)), seed=self.seed,
            n_jobs=self.n_jobs,
        )

    def _choose_threshold(self, head: Pipeline, x_val: np.ndarray, y_val: np.ndarray) -> float:
        pos = int(self.positive_class_ if self.positive_class_ is not None else 1)
        p_pos = self._columns(head.predict_proba(x_val))[:, pos]
        return validation_threshold(y_val, p_pos, self.threshold_method, self.target_sensitivity,
                                    pos)


# -- module helpers -----------------------------------------------------------------------
def _flatten(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(len(x), -1)


def _calibration_folds(y: np.ndarray) -> int:
    """3 calibration folds, fewer when the smallest class is smaller (at least 2)."""
    if y.ndim == 2:
        smallest = int(min(y.sum(axis=0).min(), (1 - y).sum(axis=0).min()))
    else:
        counts = np.bincount(y)
        smallest = int(counts[counts > 0].min())
    if smallest < 2:
        raise InvalidDataset(
            "probability calibration needs at least 2 training images of every class; "
            "add images or use calibrate=None"
        )
    return min(3, smallest)


def _targets(dataset: Dataset, arrays: LoadedArrays) -> np.ndarray:
    """Labels of the readable records: (N,) class indices or (N, L) flags."""
    return dataset.labels[arrays.ok]



def _build_preprocess(spec: Any) -> Any:
    """The `Preprocess` chain of a config list or JSON dict (None: the empty chain)."""
    spec = plain_spec(spec)
    return Preprocess.from_config(spec if spec is not None else [])
