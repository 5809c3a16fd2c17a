"""Learning from unlabelled images as well: pseudo-labelling and FixMatch.

- ``pseudo_label`` (self-training; Lee 2013): train on the labelled images, label the unlabelled
  ones the model is confident about (max class probability >= ``threshold``), retrain on both;
  repeated for ``rounds`` rounds (from fresh weights when ``reinit``, else fine-tuning).
- ``fixmatch`` (Sohn et al. 2020): every step also draws ``ratio`` x batch_size unlabelled images;
  the prediction on a weakly augmented view, where confident (>= ``threshold``), is the target
  for the prediction on a strongly augmented view, weighted by ``lambda_u``.

For multilabel tasks a pseudo-label is confident when every label's probability is at least
``threshold`` away from the undecided side. How many unlabelled images were used is recorded in
the training history (``unlabeled_used`` per epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medsight.errors import InvalidConfig
from medsight.train import distributed
from medsight.train.augment import BatchAugment
from medsight.train.data import CachedImages, ImageCache
from medsight.train.device import RunSettings
from medsight.train.loop import FitResult, SupervisedObjective
from medsight.train.losses import TaskLoss

METHODS = ("pseudo_label", "fixmatch")


@dataclass(frozen=True)
class SemiSupervisedConfig:
    """Options of `semi_supervised=` (see module docstring)."""

    method: str
    threshold: float = 0.95
    rounds: int = 1
    reinit: bool = True
    lambda_u: float = 1.0
    ratio: int = 1

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | None) -> SemiSupervisedConfig | None:
        """None (off), a method name, or a mapping with ``method`` and options."""
        if config is None:
            return None
        if isinstance(config, str):
            config = {"method": config}
        if not isinstance(config, Mapping) or "method" not in config:
            raise InvalidConfig(
                f"semi_supervised must be a mapping with 'method' ({list(METHODS)}), got {config!r}"
            )
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise InvalidConfig(
                f"semi_supervised has no option(s) {unknown}; known: {sorted(allowed)}"
            )
        cfg = cls(**dict(config))
        if cfg.method not in METHODS:
            raise InvalidConfig(
                f"semi_supervised method {cfg.method!r} is not one of {list(METHODS)}"
            )
        if not 0 <= cfg.threshold <= 1:
            raise InvalidConfig(f"semi_supervised threshold must be in [0, 1], got {cfg.threshold}")
        if cfg.rounds < 1 or cfg.ratio < 1 or cfg.lambda_u < 0:
            raise InvalidConfig(
                f"semi_supervised needs rounds >= 1, ratio >= 1, lambda_u >= 0; got {config!r}"
            )
        return cfg


# -- pseudo-labelling ---------------------------------------------------------------------------
def select_confident(
    proba: np.ndarray, loss: TaskLoss, threshold: float
) -> tuple[np.ndarray, torch.Tensor]:
    """Rows whose prediction is confident, and their hard pseudo-labels (targets dtype)."""
    targets, conf = loss.pseudo_targets(torch.as_tensor(proba))
    keep = (conf >= threshold).numpy()
    rows = np.flatnonzero(keep)
    t = targets[torch.as_tensor(rows, dtype=torch.long)]
    return rows, (t.float() if t.is_floating_point() else t.long())


RoundFit = Callable[[int, CachedImages, int | None], tuple[nn.Module, FitResult]]
Scorer = Callable[[nn.Module, CachedImages], np.ndarray]


def pseudo_label_rounds(
    config: SemiSupervisedConfig,
    labelled: CachedImages,
    unlabeled: ImageCache,
    loss: TaskLoss,
    fit_round: RoundFit,
    score: Scorer,
    lower_is_better: bool = False,
) -> tuple[nn.Module, FitResult]:
    """Round 0 on the labelled data, then `config.rounds` rounds adding confident pseudo-labels.

    ``fit_round(round, data, pseudo_from)`` trains one round (rows >= `pseudo_from` of `data` are
    pseudo-labelled) and returns the model holding its best weights plus the round's result;
    ``score(model, images)`` returns probabilities. Returns the model of the round with the best
    validation metric (the last round when there is no validation data: pseudo-labels that hurt
    on validation are not kept) and a result whose history spans every round (``round`` and
    ``pseudo_labelled`` columns).
    """
    if labelled.targets is None:
        raise ValueError("labelled data needs targets")
    model, result = fit_round(0, labelled, None)
    history = [{"unlabeled_used": 0, **h, "pseudo_labelled": 0} for h in result.history]
    pool = CachedImages(unlabeled)
    best_model, best_result = model, result
    for r in range(1, config.rounds + 1):
        rows, targets = select_confident(score(model, pool), loss, config.threshold)
        if len(rows):
            data = CachedImages(
                labelled.cache.concat(unlabeled.subset(rows)),
                torch.cat([labelled.targets, targets.to(labelled.targets.dtype)]),
            )
        else:
            data = labelled
        model, result = fit_round(r, data, len(labelled))
        history += [{**h, "pseudo_labelled": int(len(rows))} for h in result.history]
        if _better(result.best_metric, best_result.best_metric, lower_is_better):
            best_model, best_result = model, result
    best_result.history = history
    return best_model, best_result


def _better(new: float | None, old: float | None, lower_is_better: bool) -> bool:
    """Whether a round's validation metric beats the best so far (no metric: the newer wins)."""
    if new is None or old is None:
        return True
    return new < old if lower_is_better else new > old


# -- FixMatch -----------------------------------------------------------------------------------
class FixMatchObjective:
    """Supervised loss plus the FixMatch consistency loss on unlabelled images."""

    def __init__(
        self,
        base: SupervisedObjective,
        unlabeled: ImageCache,
        config: SemiSupervisedConfig,
        batch_size: int,
        seed: int,
    ):
        if len(unlabeled) == 0:
            raise InvalidConfig("fixmatch needs unlabelled images (label None, or unlabeled=...)")
        self.base = base
        self.unlabeled = unlabeled
        self.config = config
        self.u_batch = max(1, config.ratio * batch_size)
        self.strong = BatchAugment(base.augment.config.strong(), base.augment.spatial_dims)
        self.generator = torch.Generator().manual_seed(seed + 2)
        self._order = torch.zeros(0, dtype=torch.long)
        self._pos = 0
        self._used = 0
        self._seen = 0

    def start_epoch(self, epoch: int) -> None:
        self.base.start_epoch(epoch)
        self._order = torch.randperm(len(self.unlabeled), generator=self.generator)
        self._pos = 0
        self._used = 0
        self._seen = 0

    def _next_rows(self) -> torch.Tensor:
        rows = []
        need = self.u_batch
        while need > 0:
            if self._pos >= len(self._order):
                self._order = torch.randperm(len(self.unlabeled), generator=self.generator)
                self._pos = 0
            take = self._order[self._pos:self._pos + need]
            rows.append(take)
            self._pos += len(take)
            need -= len(take)
        group = distributed.current()  # the job's unlabelled batch, shared out like the labelled
        return torch.cat(rows) if group is None else torch.cat(rows)[group.rank::group.world]

    def batch_loss(self, model, x, y, rows, settings: RunSettings):  # noqa: D102 (Objective)
        base, loss = self.base, self.base.loss
        spatial = x.ndim - 2
        x = base.augment(settings.to_device(x), base.generator)
        y = settings.to_device(y)
        x, perm, lam = base.augment.mix(x, base.generator)
        u = settings.to_device(self.unlabeled.batch(self._next_rows()))
        u_weak = base.augment(u, base.generator)
        u_strong = self.strong(u, self.generator)
        batch = torch.cat([x, u_weak, u_strong])
        fmt = settings.memory_format(spatial)
        if fmt is not None:
            batch = batch.contiguous(memory_format=fmt)
        with settings.autocast():
            logits = model(batch)
        n, m = len(x), len(u)
        logits_x, logits_w, logits_s = logits[:n], logits[n:n + m], logits[n + m:]
        sup = loss.per_sample(logits_x, y)
        if perm is not None:
            sup = lam * sup + (1 - lam) * loss.per_sample(logits_x, y[perm])
        with torch.no_grad():
            targets, conf = loss.pseudo_targets(loss.proba(logits_w.detach()))
            mask = (conf >= self.config.threshold).float()
        unsup = (loss.per_sample(logits_s, targets) * mask).mean()
        self._used += int(mask.sum())
        self._seen += m
        return sup.mean() + self.config.lambda_u * unsup

    def end_epoch(self) -> dict[str, Any]:
        return {
            **self.base.end_epoch(),
            "unlabeled_used": self._used,
            "unlabeled_seen": self._seen,
        }

    def generators(self) -> dict[str, torch.Generator]:
        return {**self.base.generators(), "fixmatch": self.generator}
