"""The one estimator protocol: classical models and neural networks answer the same calls.

`fit(train, val=None)`, `predict_proba(dataset)`, `predict(dataset)`, `save(dir)` and
`load_estimator(dir)`, scikit-learn style: constructor arguments are stored as-is, learned state
ends in ``_``. Cross-validation, reports and deployment treat a random forest on HOG features and a
ResNet alike because they only use these calls.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medsight.data.dataset import Dataset, Task
from medsight.errors import BundleIntegrityError, InvalidDataset

_KINDS: dict[str, type[MedsightEstimator]] = {}
META_FILE = "estimator.json"


class MedsightEstimator(ABC):
    """Base class: subclasses implement `_fit`, `_predict_proba`, `_save_state`, `_load_state`.

    Learned attributes shared by every estimator: ``task_``, ``classes_``, ``positive_class_`` and
    ``threshold_`` (binary decision threshold on P(positive); 0.5 unless chosen on validation data).
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            _KINDS[cls.kind] = cls

    # -- public protocol ------------------------------------------------------------------
    def fit(self, train: Dataset, val: Dataset | None = None) -> MedsightEstimator:
        """Learn from the labelled records of `train`; `val` drives model selection if used."""
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
            is_pos = proba[:, pos] >= self.threshold_
            return np.where(is_pos, pos, 1 - pos)
        return proba.argmax(axis=1)

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, as given (scikit-learn convention)."""
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def save(self, directory: str | Path) -> Path:
        """Write the fitted estimator into `directory` (created); returns the directory."""
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "params": _jsonable(self.get_params()),
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
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(train) first")


def load_estimator(directory: str | Path) -> MedsightEstimator:
    """Load any estimator written by `MedsightEstimator.save`."""
    d = Path(directory)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise BundleIntegrityError(f"{d} holds no {META_FILE}: not a saved medsight estimator")
    meta = json.loads(meta_path.read_text())
    cls = _KINDS.get(meta["kind"])
    if cls is None:
        _import_builtin_kinds()
        cls = _KINDS.get(meta["kind"])
    if cls is None:
        raise BundleIntegrityError(f"{d}: unknown estimator kind {meta['kind']!r}")
    est = cls(**meta["params"])
    est.task_ = Task(meta["task"])
    est.classes_ = list(meta["classes"])
    est.positive_class_ = meta["positive_class"]
    est.threshold_ = float(meta["threshold"])
    est._load_state(d)
    return est


def _import_builtin_kinds() -> None:
    import importlib

    for mod in ("medsight.models.classical", "medsight.models.torch_classifier",
                "medsight.models.torch_ensemble"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError:
            continue


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
