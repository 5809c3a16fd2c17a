"""Validation schemes: holdout, (patient-grouped) k-fold cross-validation, external test set.

Each scheme only uses the estimator protocol (`fit`, `predict_proba`, `decide`), so a random
forest and a ResNet are evaluated alike. A leakage check runs before every evaluation: the same
patient on both sides of a split raises `LeakageError` unless ``allow_leakage=True`` (then the
overlap is recorded in the result). Results are dataclasses whose ``to_dict()`` is JSON-ready, in
the shape of ``metrics.json``: ``{"test": {...}, "cv": {"folds": [...], "mean": {...}, ...}}``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medsight.data.dataset import Dataset, Task
from medsight.data.quality import assert_no_leakage
from medsight.data.splits import ensure_splits, has_patient_ids, holdout, kfold
from medsight.errors import InvalidConfig, InvalidDataset, LeakageError
from medsight.evaluate.bootstrap import metrics_with_ci
from medsight.evaluate.metrics import compute_metrics
from medsight.jsonable import jsonable
from medsight.models.base import MedsightEstimator

log = logging.getLogger(__name__)

EstimatorFactory = Callable[[], MedsightEstimator]
_SHOWN = 5  # patient ids named in a leakage message
_NOT_METRICS = {"fold", "n_train", "n_test", "n", "positive_class", "threshold"}


# -- results --------------------------------------------------------------------------------
@dataclass
class Predictions:
    """Per-record predictions of one evaluated set (only records whose image could be read)."""

    refs: list[str]
    y_true: np.ndarray
    proba: np.ndarray
    y_pred: np.ndarray
    patient_ids: list[str | None] = field(default_factory=list)
    fold: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.refs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": list(self.refs),
            "y_true": self.y_true.tolist(),
            "proba": self.proba.tolist(),
            "y_pred": self.y_pred.tolist(),
            "patient_id": list(self.patient_ids),
        }
        if self.fold is not None:
            out["fold"] = self.fold.tolist()
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per record: ref, patient, (fold), y_true, y_pred and one proba_k column each."""
        frame = pd.DataFrame({"ref": self.refs, "patient_id": self.patient_ids or None})
        if self.fold is not None:
            frame["fold"] = self.fold
        frame["y_true"] = list(self.y_true) if self.y_true.ndim > 1 else self.y_true
        frame["y_pred"] = list(self.y_pred) if self.y_pred.ndim > 1 else self.y_pred
        for k in range(self.proba.shape[1]):
            frame[f"proba_{k}"] = self.proba[:, k]
        return frame


@dataclass
class SplitEvaluation:
    """Metrics (with confidence intervals when asked) and predictions of one split."""

    name: str
    metrics: dict[str, Any]
    predictions: Predictions
    unreadable: list[str] = field(default_factory=list)
    threshold: float | None = None

    @property
    def n(self) -> int:
        return len(self.predictions)

    def to_dict(self, predictions: bool = False) -> dict[str, Any]:
        out = {**jsonable(self.metrics), "n": self.n, "n_unreadable": len(self.unreadable)}
        if self.unreadable:
            out["unreadable"] = list(self.unreadable)
        if predictions:
            out["predictions"] = self.predictions.to_dict()
        return out


@dataclass
class HoldoutResult:
    """An estimator fitted on ``train`` and evaluated on ``val``/``test``."""

    splits: dict[str, SplitEvaluation]
    threshold: float
    leakage: list[dict[str, Any]]
    estimator: MedsightEstimator = field(repr=False)
    train_patients: frozenset[str] = field(default_factory=frozenset, repr=False)

    @property
    def test(self) -> SplitEvaluation:
        return self.splits["test"]

    def to_dict(self, predictions: bool = False) -> dict[str, Any]:
        """``{"val": {metrics}, "test": {metrics}}`` (+ ``"leakage"`` when it was allowed)."""
        out: dict[str, Any] = {k: s.to_dict(predictions) for k, s in self.splits.items()}
        if self.leakage:
            out["leakage"] = self.leakage
        return out


@dataclass
class CVResult:
    """Per-fold metrics, their mean and sd, and the out-of-fold predictions of every record."""

    folds: list[dict[str, Any]]
    mean: dict[str, float]
    sd: dict[str, float]
    oof: Predictions
    pooled: dict[str, Any]
    k: int
    grouped: bool
    seed: int
    unreadable: list[str] = field(default_factory=list)
    leakage: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per fold with its scalar metrics."""
        return pd.DataFrame([{k: v for k, v in f.items() if _is_number(v)} for f in self.folds])

    def to_dict(self, predictions: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "k": self.k,
            "grouped": self.grouped,
            "seed": self.seed,
            "folds": jsonable(self.folds),
            "mean": jsonable(self.mean),
            "sd": jsonable(self.sd),
            "pooled": jsonable(self.pooled),
            "n_unreadable": len(self.unreadable),
        }
        if self.unreadable:
            out["unreadable"] = list(self.unreadable)
        if self.leakage:
            out["leakage"] = self.leakage
        if predictions:
            out["oof"] = self.oof.to_dict()
        return out


@dataclass
class ExternalResult:
    """Metrics on an external set, side by side with the internal test metrics when given."""

    external: SplitEvaluation
    internal: dict[str, Any] | None
    comparison: list[dict[str, Any]]
    leakage: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, predictions: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            self.external.name: self.external.to_dict(predictions),
            "external_vs_internal": jsonable(self.comparison),
        }
        if self.leakage:
            out["leakage"] = self.leakage
        return out


# -- schemes ----------------------------------------------------------------------------------
def holdout_evaluate(
    estimator_factory: EstimatorFactory | MedsightEstimator,
    dataset: Dataset,
    ci: bool = True,
    n_boot: int = 1000,
    allow_leakage: bool = False,
    check_images: bool = False,
    quality_report: Any = None,
    evaluate: Sequence[str] = ("val", "test"),
    seed: int = 0,
) -> HoldoutResult:
    """Fit on the ``train`` split (``val`` used for model selection when present), evaluate on
    ``val`` and ``test``.

    A dataset without splits gets a seeded, patient-grouped holdout (`ensure_splits`). The
    leakage check runs first (see `check_leakage`).
    """
    _not_detection(dataset, "medsight.evaluate.detection_holdout.detection_holdout_evaluate")
    dataset = ensure_splits(dataset, seed=seed)
    parts = {name: _split_or_none(dataset, name) for name in ("train", "val", "test")}
    if parts["train"] is None or parts["test"] is None:
        raise InvalidDataset(
            f"{dataset.name}: holdout evaluation needs 'train' and 'test' splits; "
            f"found {dataset.split_counts()}"
        )
    present = {k: v for k, v in parts.items() if v is not None}
    leakage = check_leakage(
        dataset, allow=allow_leakage, check_images=check_images, quality_report=quality_report
    )
    est = _new_estimator(estimator_factory)
    est.fit(present["train"], present.get("val"))
    splits = {
        name: evaluate_split(est, present[name], name, ci=ci, n_boot=n_boot, seed=seed)
        for name in evaluate
        if name in present
    }
    return HoldoutResult(
        splits, float(est.threshold_), leakage, est, _patients(present["train"])
    )


def cross_validate(
    estimator_factory: EstimatorFactory | MedsightEstimator,
    dataset: Dataset,
    k: int = 5,
    grouped: bool | None = None,
    seed: int = 0,
    stratified: bool = True,
    val_fraction: float | None = None,
    ci: bool = False,
    n_boot: int = 1000,
    allow_leakage: bool = False,
) -> CVResult:
    """k-fold cross-validation on the labelled records of `dataset` (splits are ignored).

    Folds are grouped by patient when ids exist (``grouped=None``), so a patient is never in
    two folds. With `val_fraction` each training fold gives up a patient-grouped validation part
    used for model selection and the decision threshold. Per-fold metrics use each fold's own
    threshold; ``pooled`` are the metrics of all out-of-fold predictions together, at the default
    threshold when folds chose different ones.
    """
    _not_detection(dataset, "a holdout (detection_holdout_evaluate); detectors are not "
                            "cross-validated")
    data = dataset.labelled()
    folds = kfold(data, k=k, seed=seed, stratified=stratified, grouped=grouped)
    leakage: list[dict[str, Any]] = []
    for f, (_, te) in enumerate(folds):
        sides = np.full(len(data), "train", dtype=object)
        sides[te] = "test"
        fold_ds = data.with_splits(list(sides))
        fold_ds.name = f"{data.name}[fold{f}]"
        leakage += [{"fold": f, **x} for x in check_leakage(fold_ds, allow=allow_leakage)]

    n, kcols = len(data), len(data.classes)
    proba = np.full((n, kcols), np.nan)
    y_pred = np.full((n, kcols) if data.task is Task.MULTILABEL else n, -1, dtype=int)
    fold_of = np.full(n, -1, dtype=int)
    rows: list[dict[str, Any]] = []
    thresholds: list[float] = []
    for f, (tr, te) in enumerate(folds):
        train, test = data.subset(tr, f"{data.name}[fold{f}-train]"), data.subset(te)
        val = None
        if val_fraction:
            carved = holdout(train, (1 - val_fraction, val_fraction), seed=seed,
                             names=("train", "val"))
            train, val = carved.split("train"), carved.split("val")
        est = _new_estimator(estimator_factory).fit(train, val)
        ev = evaluate_split(est, test, f"fold{f}", ci=ci, n_boot=n_boot, seed=seed)
        idx = te[_positions(test, ev.predictions.refs)]
        proba[idx] = ev.predictions.proba
        y_pred[idx] = ev.predictions.y_pred
        fold_of[te] = f
        thresholds.append(float(est.threshold_))
        rows.append({"fold": f, "n_train": len(train), "n_test": ev.n,
                     "threshold": float(est.threshold_), **ev.metrics})
        log.info("%s fold %d/%d: %s", data.name, f + 1, k, _brief(ev.metrics))

    done = ~np.isnan(proba[:, 0])
    unreadable = [data.records[i].ref for i in np.flatnonzero(~done)]
    oof = Predictions(
        refs=[data.records[i].ref for i in np.flatnonzero(done)],
        y_true=data.labels[done],
        proba=proba[done],
        y_pred=y_pred[done],
        patient_ids=[data.records[i].patient_id for i in np.flatnonzero(done)],
        fold=fold_of[done],
    )
    same = len(set(thresholds)) == 1
    pooled = _metrics(
        data, oof.y_true, oof.proba, thresholds[0] if same else None, ci=ci, n_boot=n_boot,
        seed=seed, patient_ids=oof.patient_ids,
    )
    mean, sd = _mean_sd(rows)
    used_groups = has_patient_ids(data) if grouped is None else grouped
    return CVResult(rows, mean, sd, oof, pooled, k, bool(used_groups), seed, unreadable, leakage)


def external_evaluate(
    estimator: MedsightEstimator,
    external_dataset: Dataset,
    internal_result: HoldoutResult | CVResult | dict[str, Any] | None = None,
    ci: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    allow_leakage: bool = False,
    name: str = "external",
) -> ExternalResult:
    """Evaluate a fitted estimator on every labelled record of a new dataset.

    The internal metrics (holdout test, CV mean, or a metrics dict) are set side by side. When
    the internal result is a holdout, a patient of the external set that was in its training
    split raises `LeakageError` unless allowed.
    """
    if external_dataset.task is not estimator.task_ or list(external_dataset.classes) != list(
        estimator.classes_
    ):
        raise InvalidDataset(
            f"{external_dataset.name} ({external_dataset.task.value}, classes "
            f"{external_dataset.classes}) does not match the model ({estimator.task_.value}, "
            f"classes {estimator.classes_})"
        )
    leakage: list[dict[str, Any]] = []
    if isinstance(internal_result, HoldoutResult):
        shared = sorted(internal_result.train_patients & _patients(external_dataset))
        if shared:
            leakage = _external_leak(shared, name, allow_leakage, external_dataset.name)
    ev = evaluate_split(estimator, external_dataset.labelled(), name, ci=ci, n_boot=n_boot,
                        seed=seed)
    internal = _internal_metrics(internal_result)
    comparison = []
    if internal is not None:
        for metric, value in ev.metrics.items():
            other = internal.get(metric)
            if metric in _NOT_METRICS:
                continue
            if _is_number(value) and _is_number(other):
                comparison.append({"metric": metric, "internal": float(other),
                                   "external": float(value), "delta": float(value) - float(other)})
    return ExternalResult(ev, internal, comparison, leakage)


def evaluate_split(
    estimator: MedsightEstimator,
    dataset: Dataset,
    name: str,
    ci: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> SplitEvaluation:
    """Metrics and predictions of a fitted estimator on the labelled records of `dataset`.

    Records whose image could not be read (NaN probability rows) are left out and listed.
    """
    data = dataset.labelled()
    if len(data) == 0:
        raise InvalidDataset(f"{dataset.name}: no labelled records to evaluate on ({name})")
    proba = np.asarray(estimator.predict_proba(data), dtype=np.float64)
    ok = _readable(proba)
    unreadable = [data.records[i].ref for i in np.flatnonzero(~ok)]
    if unreadable:
        log.warning("%s: %d of %d images unreadable, left out of the %s metrics",
                    data.name, len(unreadable), len(data), name)
    if not ok.any():
        raise InvalidDataset(f"{dataset.name}: no image of the {name} split could be read")
    kept = np.flatnonzero(ok)
    y_true = data.labels[ok]
    proba = proba[ok]
    preds = Predictions(
        refs=[data.records[i].ref for i in kept],
        y_true=y_true,
        proba=proba,
        y_pred=np.asarray(estimator.decide(proba)),
        patient_ids=[data.records[i].patient_id for i in kept],
    )
    threshold = float(estimator.threshold_) if data.task is Task.BINARY else None
    metrics = _metrics(data, y_true, proba, threshold, ci=ci, n_boot=n_boot, seed=seed,
                       patient_ids=preds.patient_ids)
    return SplitEvaluation(name, metrics, preds, unreadable, threshold)


# -- leakage ----------------------------------------------------------------------------------
def check_leakage(
    dataset: Dataset,
    allow: bool = False,
    check_images: bool = False,
    quality_report: Any = None,
) -> list[dict[str, Any]]:
    """Patient-id overlap between the splits of `dataset` (always; cheap), plus image leakage.

    Image-level leakage (identical pixels in two splits) is checked only when a precomputed
    `quality_report` (`medsight.data.quality.QualityReport`) is given or ``check_images=True``
    (which decodes and hashes every image). Raises `LeakageError` unless `allow`; returns the
    findings (JSON-ready dicts) otherwise.
    """
    found = assert_no_leakage(dataset, allow=allow, images=False)
    if quality_report is not None or check_images:
        seen = {(f.kind, f.key) for f in found}
        more = assert_no_leakage(dataset, allow=allow, images=True, report=quality_report)
        found += [f for f in more if (f.kind, f.key) not in seen]
    return [f.to_dict() for f in found]


def _patients(ds: Dataset) -> frozenset[str]:
    return frozenset(str(p) for p in ds.patient_ids if p is not None and str(p) != "")


def _external_leak(shared: list[str], name: str, allow: bool, what: str) -> list[dict[str, Any]]:
    """Patients of the external set that were in the internal training split."""
    shown = ", ".join(shared[:_SHOWN]) + (" ..." if len(shared) > _SHOWN else "")
    if not allow:
        raise LeakageError(
            f"{what}: {len(shared)} patient(s) of the {name} set were in the training split "
            f"({shown}); an external set must hold new patients, or pass allow_leakage=True"
        )
    log.warning("%s: leakage allowed: %d training patients in the %s set (%s)",
                what, len(shared), name, shown)
    return [{"kind": "patient", "key": p, "splits": ["train", name]} for p in shared]


# -- helpers ------------------------------------------------------------------------------------
def _not_detection(dataset: Dataset, use: str) -> None:
    """These schemes score probabilities; boxes go through the detection holdout."""
    if dataset.task is Task.DETECTION:
        raise InvalidConfig(f"{dataset.name} is a detection dataset (boxes, not labels); use {use}")


def _new_estimator(factory: EstimatorFactory | MedsightEstimator) -> MedsightEstimator:
    """A fresh, unfitted estimator: call the factory, or clone a given estimator's parameters."""
    if isinstance(factory, MedsightEstimator):
        return type(factory)(**factory.get_params())
    est = factory()
    if not isinstance(est, MedsightEstimator):
        raise InvalidConfig(
            f"the estimator factory returned {type(est).__name__}, not a MedsightEstimator"
        )
    return est


def _split_or_none(ds: Dataset, name: str) -> Dataset | None:
    idx = [i for i, r in enumerate(ds.records) if r.split == name]
    return ds.subset(idx, f"{ds.name}[{name}]") if idx else None


def _readable(proba: np.ndarray) -> np.ndarray:
    return ~np.isnan(proba).any(axis=1) if proba.size else np.zeros(len(proba), dtype=bool)


def _positions(ds: Dataset, refs: Iterable[str]) -> np.ndarray:
    """Positions in `ds` of the given refs, in order (refs are unique within a fold)."""
    where: dict[str, list[int]] = {}
    for i, r in enumerate(ds.records):
        where.setdefault(r.ref, []).append(i)
    return np.array([where[r].pop(0) for r in refs], dtype=int)


def _metrics(
    ds: Dataset,
    y_true: np.ndarray,
    proba: np.ndarray,
    threshold: float | None,
    ci: bool,
    n_boot: int,
    seed: int,
    patient_ids: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """compute_metrics for this dataset's task and classes; with `ci`, bootstrap intervals of
    the headline metrics under ``"ci"`` (resampling patients, not images, when ids exist)."""
    pos = ds.positive_class if ds.positive_class is not None else 1
    if ds.task is not Task.BINARY:
        threshold = None  # the most probable class (multilabel: 0.5 per label)
    metrics = compute_metrics(y_true, proba, ds.task.value, positive_class=pos,
                              threshold=threshold, class_names=list(ds.classes))
    if ci:
        groups = None
        if patient_ids is not None and all(p not in (None, "") for p in patient_ids):
            groups = [str(p) for p in patient_ids]
        metrics["ci"] = metrics_with_ci(y_true, proba, ds.task.value, positive_class=pos,
                                        threshold=threshold, n_boot=n_boot, seed=seed,
                                        groups=groups)
    return metrics


def _mean_sd(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample sd (ddof=1) over folds of every scalar metric (undefined folds skipped)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items()
                 if k not in _NOT_METRICS - {"threshold"} and k not in keys and _is_number(v)]
    mean, sd = {}, {}
    for key in keys:
        vals = np.array([float(r[key]) for r in rows if _is_number(r.get(key))])
        vals = vals[~np.isnan(vals)]
        mean[key] = float(vals.mean()) if len(vals) else math.nan
        sd[key] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
    return mean, sd


def _internal_metrics(result: HoldoutResult | CVResult | dict[str, Any] | None) -> dict | None:
    if result is None:
        return None
    if isinstance(result, HoldoutResult):
        return result.test.metrics
    if isinstance(result, CVResult):
        return result.mean
    if isinstance(result, dict):
        return result
    raise InvalidConfig(f"internal_result must be a holdout/CV result or a dict, got {result!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _brief(metrics: dict[str, Any]) -> str:
    keys = ("auc", "acc", "sensitivity", "specificity")
    return ", ".join(f"{k}={metrics[k]:.3f}" for k in keys if _is_number(metrics.get(k)))
