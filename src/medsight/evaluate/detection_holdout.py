"""Holdout evaluation of a detector: fit on ``train`` (``val`` for its own choices such as the score
threshold), predict boxes for ``val`` and ``test``, and score them with `evaluate_detections`.

A detector answers `fit(train, val)`, `predict_detections(dataset) -> list[Detections]` (original
image pixels, one per record) and `score_threshold_`. The patient leakage check of the
classification schemes runs first; k-fold cross-validation of detectors is not offered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medsight.boxes import Boxes, Detections
from medsight.data.dataset import Dataset, Task
from medsight.data.splits import ensure_splits
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.evaluate.detection import DetectionEvaluation, evaluate_detections
from medsight.evaluate.schemes import check_leakage
from medsight.jsonable import jsonable

log = logging.getLogger(__name__)


@dataclass
class DetectionSplitResult:
    """The boxes predicted on one split, the truth they were scored against, and the scores."""

    name: str
    refs: list[str]
    truth: list[Boxes]
    predictions: list[Detections]
    evaluation: DetectionEvaluation
    unreadable: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {**jsonable(self.evaluation.metrics), "n_unreadable": len(self.unreadable)}
        if self.unreadable:
            out["unreadable"] = list(self.unreadable)
        return out


@dataclass
class DetectionHoldoutResult:
    """A detector fitted on ``train`` and evaluated on ``val`` / ``test``."""

    splits: dict[str, DetectionSplitResult]
    leakage: list[dict[str, Any]]
    estimator: Any = field(repr=False)

    @property
    def test(self) -> DetectionSplitResult:
        return self.splits["test"]

    def to_dict(self) -> dict[str, Any]:
        """``{"val": {metrics}, "test": {metrics}}`` (+ ``"leakage"`` when it was allowed)."""
        out: dict[str, Any] = {k: s.to_dict() for k, s in self.splits.items()}
        if self.leakage:
            out["leakage"] = self.leakage
        return out


def check_detector(estimator: Any, label: str | None = None) -> None:
    """InvalidConfig unless `estimator` predicts boxes (the detector protocol)."""
    if not callable(getattr(estimator, "predict_detections", None)):
        name = f"model {label!r} ({type(estimator).__name__})" if label else type(estimator).__name__
        raise InvalidConfig(f"{name} does not predict boxes; the data is a detection dataset: "
                            "use kind 'detector'")


def detection_holdout_evaluate(
    factory: Callable[[], Any],
    dataset: Dataset,
    ci: bool = True,
    n_boot: int = 1000,
    allow_leakage: bool = False,
    seed: int = 0,
    evaluate: Sequence[str] = ("val", "test"),
) -> DetectionHoldoutResult:
    """Fit a fresh detector from `factory` on ``train`` and evaluate the `evaluate` splits.

    A dataset without splits gets a seeded holdout (grouped by patient when ids exist).
    """
    if dataset.task is not Task.DETECTION:
        raise InvalidDataset(f"{dataset.name} is a {dataset.task.value} dataset, not detection")
    dataset = ensure_splits(dataset, seed=seed)
    parts = {}
    for name in ("train", "val", "test"):
        idx = [i for i, r in enumerate(dataset.records) if r.split == name and r.annotated]
        if idx:
            parts[name] = dataset.subset(idx, f"{dataset.name}[{name}]")
    if "train" not in parts or "test" not in parts:
        raise InvalidDataset(
            f"{dataset.name}: a detection holdout needs annotated 'train' and 'test' images; "
            f"found {dataset.split_counts()}"
        )
    leakage = check_leakage(dataset, allow=allow_leakage)
    est = factory()
    check_detector(est)
    est.fit(parts["train"], parts.get("val"))
    splits = {name: evaluate_detection_split(est, parts[name], name, ci=ci, n_boot=n_boot,
                                             seed=seed)
              for name in evaluate if name in parts}
    return DetectionHoldoutResult(splits, leakage, est)


def evaluate_detection_split(estimator: Any, dataset: Dataset, name: str, ci: bool = True,
                             n_boot: int = 1000, seed: int = 0) -> DetectionSplitResult:
    """Predict and score the annotated records of `dataset` with a fitted detector.

    Images the detector could not read (None predictions) are left out of the metrics and named.
    """
    data = dataset.labelled()
    if len(data) == 0:
        raise InvalidDataset(f"{dataset.name}: no annotated images to evaluate on ({name})")
    found = list(estimator.predict_detections(data))
    if len(found) != len(data):
        raise InvalidDataset(
            f"{type(estimator).__name__} returned {len(found)} predictions for "
            f"{len(data)} images of {data.name}"
        )
    unreadable = [r.ref for r, d in zip(data.records, found, strict=True) if d is None]
    if unreadable:
        log.warning("%s: %d of %d images unreadable, left out of the %s metrics",
                    data.name, len(unreadable), len(data), name)
    kept = [i for i, d in enumerate(found) if d is not None]
    if not kept:
        raise InvalidDataset(f"{dataset.name}: no image of the {name} split could be read")
    records = [data.records[i] for i in kept]
    predictions = [found[i] for i in kept]
    truth = [r.boxes for r in records]
    patients = [r.patient_id for r in records]
    groups = [str(p) for p in patients] if all(p not in (None, "") for p in patients) else None
    evaluation = evaluate_detections(
        truth, predictions, data.classes, score_threshold=float(estimator.score_threshold_),
        ci=ci, n_boot=n_boot, seed=seed, groups=groups)  # AP over COCO's 100 boxes per image
    log.info("%s %s: mAP@0.5 %.3f, mAP@0.5:0.95 %.3f", data.name, name,
             evaluation.metrics["map50"] or float("nan"),
             evaluation.metrics["map50_95"] or float("nan"))
    return DetectionSplitResult(name, [r.ref for r in records], truth, predictions, evaluation,
                                unreadable)
