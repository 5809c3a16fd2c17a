"""`TorchEnsemble`: the mean probabilities of several fitted `TorchClassifier`s (k-fold members).

`fit` trains ``n_folds`` members with `medsight.data.splits.kfold` (stratified; grouped by patient
when patient ids exist): member i learns on every fold but fold i, which is its validation split.
`from_members` wraps classifiers fitted elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medsight.data.dataset import Dataset, Task
from medsight.data.splits import kfold
from medsight.errors import BundleIntegrityError, InvalidConfig
from medsight.models.base import MedsightEstimator, load_estimator
from medsight.models.threshold import check_estimator_method, validation_threshold
from medsight.models.torch_classifier import TorchClassifier


class TorchEnsemble(MedsightEstimator):
    """Mean probabilities of several fitted `TorchClassifier`s (see the module docstring).

    Parameters: ``params`` of every member `TorchClassifier` (each member's seed is
    ``seed + i``; a ``checkpoint_dir`` gets one ``fold_i`` folder per member), ``n_folds``,
    ``seed`` (folds and members), ``threshold_method`` and ``target_sensitivity`` (the binary
    decision threshold of the mean probabilities, chosen on the validation split).
    """

    kind: ClassVar[str] = "torch_ensemble"

    def __init__(self, params: dict[str, Any] | None = None, n_folds: int = 5, seed: int = 0,
                 threshold_method: str | None = "youden", target_sensitivity: float = 0.9):
        self.params = params
        self.n_folds = n_folds
        self.seed = seed
        self.threshold_method = threshold_method
        self.target_sensitivity = target_sensitivity

    @classmethod
    def with_defaults(cls, params: dict[str, Any], **defaults: Any) -> TorchEnsemble:
        """As for any kind, and the run's preprocessing chain belongs to every member network."""
        params = dict(params)
        if "preprocess" in defaults:
            params["params"] = {"preprocess": defaults.pop("preprocess"),
                                **(params.get("params") or {})}
        ens = super().with_defaults(params, **defaults)
        assert isinstance(ens, TorchEnsemble)
        return ens

    def saved_params(self) -> dict[str, Any]:
        """As for any kind, without the members' run-only settings (device, threads, ...)."""
        saved = super().saved_params()
        if saved.get("params") is not None:
            saved["params"] = TorchClassifier.saveable(saved["params"])
        return saved

    def validate_params(self) -> None:
        """n_folds >= 2 and member parameters a `TorchClassifier` accepts."""
        if not isinstance(self.n_folds, (int, np.integer)) or self.n_folds < 2:
            raise InvalidConfig(f"an ensemble needs n_folds >= 2, got {self.n_folds!r}")
        if self.params is not None and not isinstance(self.params, dict):
            raise InvalidConfig(f"params (of the member networks) must be a mapping, got "
                                f"{self.params!r}")
        check_estimator_method(self.threshold_method)
        member = TorchClassifier.with_defaults(dict(self.params or {}))
        member.validate_params()

    @classmethod
    def from_members(cls, members: Sequence[TorchClassifier]) -> TorchEnsemble:
        """An ensemble of already fitted classifiers of one task and class list."""
        if not members:
            raise InvalidConfig("an ensemble needs at least one member")
        first = members[0]
        for m in members:
            m._check_fitted()
            if m.task_ is not first.task_ or m.classes_ != first.classes_:
                raise InvalidConfig("ensemble members must share the task and the classes")
        ens = cls(params=first.saved_params(), n_folds=max(2, len(members)))
        ens.task_, ens.classes_ = first.task_, list(first.classes_)
        ens.positive_class_, ens.threshold_ = first.positive_class_, 0.5
        ens.members_ = list(members)
        return ens

    def _fit(self, train: Dataset, val: Dataset | None) -> None:
        labelled = train.labelled()
        unlabeled = [r for r in train.records if r.label is None]
        self.members_ = []
        base = dict(self.params or {})
        for i, (fit_idx, hold_idx) in enumerate(kfold(labelled, k=self.n_folds, seed=self.seed)):
            params = {**base, "seed": int(base.get("seed", self.seed)) + i}
            if base.get("checkpoint_dir"):
                params["checkpoint_dir"] = str(Path(base["checkpoint_dir"]) / f"fold_{i}")
            member = TorchClassifier(**params)
            part = labelled.subset(fit_idx)
            if unlabeled:
                part = part.concat(Dataset(unlabeled, train.task, train.classes, train.name,
                                           train.positive_class))
            member.fit(part, labelled.subset(hold_idx))
            self.members_.append(member)
        if val is not None and self.task_ is Task.BINARY and self.threshold_method:
            self.threshold_ = self._choose_threshold(val.labelled())

    def _choose_threshold(self, val: Dataset) -> float:
        pos = int(self.positive_class_ if self.positive_class_ is not None else 1)
        return validation_threshold(val.labels, self._predict_proba(val)[:, pos],
                                    self.threshold_method, self.target_sensitivity, pos)

    def _predict_proba(self, dataset: Dataset) -> np.ndarray:
        return np.mean([m.predict_proba(dataset) for m in self.members_], axis=0)

    def _save_state(self, directory: Path) -> None:
        for i, m in enumerate(self.members_):
            m.save(directory / f"member_{i}")
        (directory / "ensemble.json").write_text(json.dumps({"members": len(self.members_)}))

    def _load_state(self, directory: Path) -> None:
        meta = directory / "ensemble.json"
        if not meta.is_file():
            raise BundleIntegrityError(f"{directory}: missing ensemble.json of a torch ensemble")
        n = int(json.loads(meta.read_text())["members"])
        self.members_ = [load_estimator(directory / f"member_{i}") for i in range(n)]
