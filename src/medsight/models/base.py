"""The one estimator protocol: classical models and neural networks answer the same calls.

`fit(train, val=None)`, `predict_proba(dataset)`, `predict(dataset)`, `save(dir)` and
`load_estimator(dir)`, scikit-learn style: constructor arguments are stored as given and checked
in `fit` (`validate_params`), `get_params` / `set_params` / `clone` work on them, learned state
ends in ``_``. Cross-validation, reports and deployment treat a random forest on HOG features and a
ResNet alike because they only use these calls. Kinds are found by name in `models.kinds`.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medsight.data.dataset import Dataset, Task
from medsight.errors import BundleIntegrityError, InvalidConfig, InvalidDataset, NotFittedError
from medsight.jsonable import jsonable
from medsight.models.kinds import estimator_class, estimator_kinds
from medsight.models.threshold import apply_threshold
from medsight.preprocess.chain import plain_spec

META_FILE = "estimator.json"


class MedsightEstimator(ABC):
    """Base class: subclasses implement `_fit`, `_predict_proba`, `_save_state`, `_load_state`.

    Learned attributes shared by every estimator: ``task_``, ``classes_``, ``positive_class_`` and
    ``threshold_`` (binary decision threshold on P(positive); 0.5 unless chosen on validation data).
    """

    kind: ClassVar[str] = ""
    # constructor arguments that only say how a run executes (devices, threads, callbacks...):
    # never saved with a fitted model, never needed to load it
    run_only: ClassVar[frozenset[str]] = frozenset()

    # -- public protocol ------------------------------------------------------------------
    def fit(self, train: Dataset, val: Dataset | None = None) -> MedsightEstimator:
        """Learn from the labelled records of `train`; `val` drives model selection if used."""
        self.validate_params()
        labelled = train.labelled()
        if len(labelled) == 0:
            raise InvalidDataset(f"{train.name}: no labelled records to fit on")
        self.task_ = train.task
        self.classes_ = list(train.classes)
        self.positive_class_ = train.positive_class
        self.threshold_ = 0.5
        self._fit(train, val)
        return self

    def predict_proba(self, dataset: Dataset) -> np.ndarray:
        """(N, K) class probabilities (multilabel: (N, L) independent label probabilities)."""
        self._check_fitted()
        return np.asarray(self._predict_proba(dataset), dtype=np.float64)

    def predict(self, dataset: Dataset) -> np.ndarray:
        """Class indices (N,) or label flags (N, L), using `threshold_` for binary tasks."""
        return self.decide(self.predict_proba(dataset))

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Turn probabilities into decisions with this estimator's task and threshold."""
        self._check_fitted()
        if self.task_ is Task.MULTILABEL:
            return (proba >= 0.5).astype(int)
        if self.task_ is Task.BINARY:
            pos = int(self.positive_class_ if self.positive_class_ is not None else 1)
            return apply_threshold(proba[:, pos], self.threshold_, pos)
        return proba.argmax(axis=1)

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's parameter names, in order."""
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, as given (scikit-learn convention)."""
        missing = [p for p in self.param_names() if not hasattr(self, p)]
        if missing:
            raise AttributeError(
                f"{type(self).__name__}.__init__ does not store its parameter(s) {missing} "
                "as attributes of the same name; every constructor argument must be stored as given"
            )
        return {p: getattr(self, p) for p in self.param_names()}

    def saved_params(self) -> dict[str, Any]:
        """The parameters saved with a fitted model: `get_params` without the `run_only` ones
        (a `Preprocess` given as ``preprocess`` in its JSON-ready form)."""
        return self.saveable(self.get_params())

    @classmethod
    def saveable(cls, params: dict[str, Any]) -> dict[str, Any]:
        """`params` of this kind as saved: without `run_only`, ``preprocess`` JSON-ready."""
        out = {k: v for k, v in params.items() if k not in cls.run_only}
        if "preprocess" in out:
            out["preprocess"] = plain_spec(out["preprocess"])
        return out

    @classmethod
    def check_param_names(cls, names: Any) -> None:
        """InvalidConfig naming the parameters this kind does not take, and those it does."""
        accepted = cls.param_names()
        unknown = sorted(set(names) - set(accepted))
        if unknown:
            raise InvalidConfig(
                f"{cls.__name__} (kind {cls.kind!r}) has no parameter(s) {unknown}; accepted: "
                f"{sorted(accepted)}"
            )

    def set_params(self, **params: Any) -> MedsightEstimator:
        """Change constructor arguments (checked at the next `fit`); returns the estimator."""
        self.check_param_names(params)
        for name, value in params.items():
            setattr(self, name, value)
        return self

    @classmethod
    def with_defaults(cls, params: dict[str, Any], **defaults: Any) -> MedsightEstimator:
        """An estimator of `params` (unknown names: InvalidConfig) with run-wide `defaults`
        (``preprocess``, ``seed``, ``threshold_method``, ...) for the parameters this kind takes
        and `params` leaves unset."""
        cls.check_param_names(params)
        accepted = cls.param_names()
        return cls(**{**{k: v for k, v in defaults.items() if k in accepted}, **params})

    @abstractmethod
    def validate_params(self) -> None:
        """Check the stored parameters (InvalidConfig naming the bad one); `fit` calls it first."""

    def save(self, directory: str | Path) -> Path:
        """Write the fitted estimator into `directory` (created); returns the directory."""
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "params": jsonable(self.saved_params()),
            "task": self.task_.value,
            "classes": self.classes_,
            "positive_class": self.positive_class_,
            "threshold": float(self.threshold_),
        }
        self._save_state(d)
        (d / META_FILE).write_text(json.dumps(meta, indent=2))
        return d

    # -- subclass hooks ---------------------------------------------------------------------
    @abstractmethod
    def _fit(self, train: Dataset, val: Dataset | None) -> None: ...

    @abstractmethod
    def _predict_proba(self, dataset: Dataset) -> np.ndarray: ...

    @abstractmethod
    def _save_state(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_state(self, directory: Path) -> None: ...

    def _check_fitted(self) -> None:
        if not hasattr(self, "task_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(train) first, or load a "
                "saved model with load_estimator(folder)"
            )


def clone(estimator: MedsightEstimator) -> MedsightEstimator:
    """A new, unfitted estimator of the same kind with the same parameters (containers copied)."""
    return type(estimator)(**{k: _copy(v) for k, v in estimator.get_params().items()})


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value


def load_estimator(directory: str | Path) -> MedsightEstimator:
    """Load any estimator written by `MedsightEstimator.save`."""
    d = Path(directory)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise BundleIntegrityError(f"{d} holds no {META_FILE}: not a saved medsight estimator")
    meta = json.loads(meta_path.read_text())
    if meta["kind"] not in estimator_kinds():
        raise BundleIntegrityError(
            f"{d}: unknown estimator kind {meta['kind']!r}; known: {estimator_kinds()}"
        )
    cls = estimator_class(meta["kind"])
    est = cls(**{k: v for k, v in meta["params"].items() if k not in cls.run_only})
    est.task_ = Task(meta["task"])
    est.classes_ = list(meta["classes"])
    est.positive_class_ = meta["positive_class"]
    est.threshold_ = float(meta["threshold"])
    est._load_state(d)
    return est
