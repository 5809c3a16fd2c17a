"""Training recipes for one network: supervised, FixMatch, pseudo-label rounds.

Each recipe goes from fresh weights to the best weights (`FitResult`), using the pieces a
`Recipe` names; `train_network` picks the recipe from the semi-supervised configuration
(None: supervised). `TorchClassifier` builds the `Recipe` from its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from medsight.train.augment import BatchAugment
from medsight.train.data import CachedImages, ImageCache
from medsight.train.device import RunSettings
from medsight.train.loop import FitResult, Objective, SupervisedObjective, Trainer
from medsight.train.losses import TaskLoss
from medsight.train.predict import predict_proba
from medsight.train.semi_supervised import (
    FixMatchObjective,
    SemiSupervisedConfig,
    pseudo_label_rounds,
)


@dataclass
class Recipe:
    """What training a network needs: a fresh model per round, a trainer per (model, objective,
    round), the loss, the batch augmentation and the run's settings."""

    new_model: Callable[[int], nn.Module]
    trainer: Callable[[nn.Module, Objective, int], Trainer]
    loss: TaskLoss
    augment: BatchAugment
    settings: RunSettings
    seed: int
    batch_size: int
    eval_batch_size: int
    lower_is_better: bool = False


def supervised(recipe: Recipe, data: CachedImages) -> tuple[nn.Module, FitResult]:
    """One supervised run on the labelled images; the model holds the best weights."""
    model = recipe.new_model(0)
    objective = SupervisedObjective(recipe.loss, recipe.augment, recipe.seed)
    result = recipe.trainer(model, objective, 0).fit(data)
    model.load_state_dict(result.best_state)
    return model, result


def fixmatch(recipe: Recipe, data: CachedImages, unlabeled: ImageCache,
             semi: SemiSupervisedConfig) -> tuple[nn.Module, FitResult]:
    """One run whose batches add FixMatch's consistency loss on unlabelled images."""
    model = recipe.new_model(0)
    objective = FixMatchObjective(SupervisedObjective(recipe.loss, recipe.augment, recipe.seed),
                                  unlabeled, semi, recipe.batch_size, recipe.seed)
    result = recipe.trainer(model, objective, 0).fit(data)
    model.load_state_dict(result.best_state)
    return model, result


def pseudo_label(recipe: Recipe, data: CachedImages, unlabeled: ImageCache,
                 semi: SemiSupervisedConfig) -> tuple[nn.Module, FitResult]:
    """Rounds of training, each adding the confident pseudo-labels of the previous model."""
    state: dict[str, nn.Module] = {}

    def fit_round(r: int, images: CachedImages, pseudo_from: int | None
                  ) -> tuple[nn.Module, FitResult]:
        m = recipe.new_model(r) if r == 0 or semi.reinit else state["model"]
        objective = SupervisedObjective(recipe.loss, recipe.augment, recipe.seed + r, pseudo_from)
        res = recipe.trainer(m, objective, r).fit(images)
        m.load_state_dict(res.best_state)
        state["model"] = m
        return m, res

    def score(m: nn.Module, images: CachedImages) -> np.ndarray:
        return predict_proba(m, images, recipe.loss, recipe.settings, recipe.eval_batch_size)

    return pseudo_label_rounds(semi, data, unlabeled, recipe.loss, fit_round, score,
                               lower_is_better=recipe.lower_is_better)


def train_network(recipe: Recipe, data: CachedImages, semi: SemiSupervisedConfig | None = None,
                  unlabeled: ImageCache | None = None) -> tuple[nn.Module, FitResult]:
    """The recipe `semi` names (None: supervised) on `data` (+ `unlabeled` images)."""
    if semi is None:
        return supervised(recipe, data)
    assert unlabeled is not None, "semi-supervised training needs unlabelled images"
    if semi.method == "fixmatch":
        return fixmatch(recipe, data, unlabeled, semi)
    return pseudo_label(recipe, data, unlabeled, semi)
