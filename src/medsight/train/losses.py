"""Task-aware losses and the matching logits -> probabilities mapping.

- binary / multiclass: cross-entropy over K logits (optional class weights, label smoothing);
- multilabel: one sigmoid per label, BCE-with-logits (``balanced`` weights positives per label);
- ordinal: ``"coral"`` (default), a cumulative-link model: the network emits one score ``s``
  and `CumulativeLinkHead` turns it into K-1 logits ``s - theta_k`` of P(grade > k) with ordered
  thresholds, so the K class probabilities P(grade = k) = P(> k-1) - P(> k) are never negative
  and predictions are rank-consistent (Cao et al., CORAL, 2020; McCullagh's proportional odds).
  ``"ce"`` treats grades as plain classes. Either way `TaskLoss.proba` returns (N, K) class
  probabilities; the expected grade is ``proba @ arange(K)`` (`expected_grade`).

Every loss is computed per sample in float32 (also under autocast) so semi-supervised training
can mask and weight samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.data.dataset import Task
from medsight.errors import InvalidConfig
from medsight.models.torch_inference import CumulativeLinkHead, link_probabilities

ORDINAL_MODES = ("coral", "ce")


class TaskLoss:
    """Loss, probabilities and pseudo-labels for one task (see module docstring)."""

    def __init__(
        self,
        task: Task,
        num_classes: int,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        ordinal: str = "coral",
    ):
        if not 0 <= label_smoothing < 1:
            raise InvalidConfig(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if ordinal not in ORDINAL_MODES:
            raise InvalidConfig(f"ordinal loss {ordinal!r} is not one of {list(ORDINAL_MODES)}")
        self.task = Task(task)
        self.num_classes = int(num_classes)
        self.class_weights = class_weights
        self.label_smoothing = float(label_smoothing)
        self.ordinal = ordinal

    @property
    def coral(self) -> bool:
        return self.task is Task.ORDINAL and self.ordinal == "coral"

    @property
    def network_outputs(self) -> int:
        """How many outputs the network must have (the CORAL head adds the thresholds)."""
        return 1 if self.coral else self.num_classes

    def head(self) -> nn.Module | None:
        """The extra output layer this loss needs after the network (CORAL), else None."""
        return CumulativeLinkHead(self.num_classes) if self.coral else None

    # -- loss --------------------------------------------------------------------------------
    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N,) losses; `target` holds class indices, or (N, L) 0/1 (or soft) label flags."""
        logits = logits.float()
        w = self.class_weights.to(logits.device) if self.class_weights is not None else None
        if self.task is Task.MULTILABEL:
            t = target.float()
            if self.label_smoothing:
                t = t * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            loss = F.binary_cross_entropy_with_logits(logits, t, pos_weight=w, reduction="none")
            return loss.mean(dim=1)
        target = target.long()
        if self.coral:
            levels = (target.unsqueeze(1) > torch.arange(self.num_classes - 1,
                                                         device=logits.device)).float()
            if self.label_smoothing:
                levels = levels * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            loss = F.binary_cross_entropy_with_logits(logits, levels, reduction="none").sum(1)
            return loss * w[target] if w is not None else loss
        return F.cross_entropy(
            logits, target, weight=w, label_smoothing=self.label_smoothing, reduction="none"
        )

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.per_sample(logits, target).mean()

    # -- outputs -----------------------------------------------------------------------------
    def proba(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K) class probabilities, or (N, L) independent label probabilities."""
        return link_probabilities(logits, self.task, self.coral)

    def pseudo_targets(self, proba: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard pseudo-labels and their confidence (multilabel: the least certain label's)."""
        if self.task is Task.MULTILABEL:
            return (proba >= 0.5).float(), torch.maximum(proba, 1 - proba).amin(dim=1)
        conf, label = proba.max(dim=1)
        return label, conf


def balanced_weights(task: Task, labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """scikit-learn's "balanced" weights: n / (K * count_k); multilabel: negatives/positives.

    A class absent from the training labels gets weight 1 (it contributes no loss anyway).
    """
    if task is Task.MULTILABEL:
        pos = labels.sum(axis=0).astype(float)
        neg = len(labels) - pos
        w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
        return torch.as_tensor(w, dtype=torch.float32)
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    w = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 1.0)
    return torch.as_tensor(w, dtype=torch.float32)


def class_weight_tensor(
    spec: str | Sequence[float] | None, task: Task, labels: np.ndarray, num_classes: int
) -> torch.Tensor | None:
    """Resolve a ``class_weight`` option: None, ``"balanced"`` or one weight per class/label."""
    if spec is None:
        return None
    if spec == "balanced":
        return balanced_weights(task, labels, num_classes)
    if isinstance(spec, str):
        raise InvalidConfig(f"class_weight must be 'balanced' or a list of numbers, got {spec!r}")
    w = [float(v) for v in spec]
    if len(w) != num_classes or min(w) <= 0:
        raise InvalidConfig(
            f"class_weight needs {num_classes} positive numbers (one per class), got {list(spec)}"
        )
    return torch.as_tensor(w, dtype=torch.float32)


def expected_grade(proba: np.ndarray) -> np.ndarray:
    """Mean grade under (N, K) ordinal class probabilities (what regression-style metrics read)."""
    proba = np.asarray(proba, dtype=float)
    return proba @ np.arange(proba.shape[1])
