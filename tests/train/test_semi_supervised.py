"""Semi-supervised training uses the unlabelled images: pseudo-labelling and FixMatch."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from tiny_nets import subset

from medsight.data.dataset import Dataset
from medsight.data.sources.medmnist import from_medmnist
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.models.torch_classifier import TorchClassifier
from medsight.train.semi_supervised import SemiSupervisedConfig


@pytest.fixture
def half_labelled(breastmnist):
    """120 BreastMNIST training images, every second one with its label removed."""
    train = subset(from_medmnist(breastmnist).split("train"), 120)
    records = [r if i % 2 == 0 else replace(r, label=None) for i, r in enumerate(train.records)]
    return Dataset(records, train.task, train.classes, name="half",
                   positive_class=train.positive_class)


def _params(**kw):
    base = dict(network="tiny_cnn_test", epochs=2, batch_size=20, lr=1e-2, schedule="constant",
                augment="light", seed=0, deterministic=True, threads=2, device="cpu")
    return {**base, **kw}


def test_pseudo_labelling_adds_confident_unlabelled_images(half_labelled, breastmnist):
    val = from_medmnist(breastmnist).split("val")
    semi = {"method": "pseudo_label", "threshold": 0.5, "rounds": 1}
    clf = TorchClassifier(**_params(semi_supervised=semi)).fit(half_labelled, val)
    rounds = [h["round"] for h in clf.history_]
    assert rounds == [0, 0, 1, 1]
    first, second = clf.history_[:2], clf.history_[2:]
    # binary: every prediction is at least 50% confident, so all 60 unlabelled images join
    assert all(h["pseudo_labelled"] == 0 and h["unlabeled_used"] == 0 for h in first)
    assert all(h["pseudo_labelled"] == 60 for h in second)
    assert all(h["samples"] >= 119 for h in second) and all(h["samples"] <= 60 for h in first)
    assert all(55 <= h["unlabeled_used"] <= 60 for h in second)

    strict = TorchClassifier(**_params(semi_supervised={**semi, "threshold": 1.0}))
    strict.fit(half_labelled, val)
    assert all(h["pseudo_labelled"] == 0 and h["unlabeled_used"] == 0 for h in strict.history_)


def test_fixmatch_consistency_uses_unlabelled_batches(half_labelled):
    semi = {"method": "fixmatch", "threshold": 0.0, "lambda_u": 1.0, "ratio": 2}
    clf = TorchClassifier(**_params(semi_supervised=semi)).fit(half_labelled)
    for h in clf.history_:
        batches = 3  # 60 labelled images in batches of 20
        assert h["unlabeled_seen"] == batches * 2 * 20
        assert h["unlabeled_used"] == h["unlabeled_seen"]  # threshold 0: every image counts
    # the unlabelled term moves the weights: same draws, lambda_u 0 vs 1 -> different models
    off = TorchClassifier(**_params(semi_supervised={**semi, "lambda_u": 0.0}))
    off.fit(half_labelled)
    a, b = clf.model_.state_dict(), off.model_.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_unlabeled_dataset_argument_and_missing_unlabelled_images(half_labelled, breastmnist):
    labelled = half_labelled.labelled()
    extra = from_medmnist(breastmnist).split("test").subset(range(30))
    semi = {"method": "fixmatch", "threshold": 0.9}
    clf = TorchClassifier(**_params(epochs=1, semi_supervised=semi))
    clf.fit(labelled, unlabeled=extra)
    assert clf.history_[0]["unlabeled_seen"] == 3 * 20
    assert 0 <= clf.history_[0]["unlabeled_used"] <= 60
    with pytest.raises(InvalidDataset, match="unlabelled images"):
        TorchClassifier(**_params(epochs=1, semi_supervised=semi)).fit(labelled)


def test_semi_supervised_options_are_checked():
    assert SemiSupervisedConfig.from_config(None) is None
    assert SemiSupervisedConfig.from_config("fixmatch").threshold == 0.95
    with pytest.raises(InvalidConfig, match="mean_teacher"):
        SemiSupervisedConfig.from_config({"method": "mean_teacher"})
    with pytest.raises(InvalidConfig, match="tau"):
        SemiSupervisedConfig.from_config({"method": "fixmatch", "tau": 0.9})
    with pytest.raises(InvalidConfig, match="threshold"):
        TorchClassifier(semi_supervised={"method": "pseudo_label", "threshold": 2}).validate_params()


def test_pseudo_label_rounds_keep_the_round_that_validates_best() -> None:
    """A pseudo-label round that scores worse on validation must not replace round 0."""
    import numpy as np
    import torch
    from torch import nn

    from medsight.data.dataset import Task
    from medsight.train.data import CachedImages, ImageCache
    from medsight.train.loop import FitResult
    from medsight.train.losses import TaskLoss
    from medsight.train.semi_supervised import SemiSupervisedConfig, pseudo_label_rounds

    labelled = CachedImages(ImageCache.from_array(np.zeros((4, 1, 8, 8))), torch.tensor([0, 1, 0, 1]))
    pool = ImageCache.from_array(np.zeros((6, 1, 8, 8)))
    val_auc = {0: 0.80, 1: 0.70, 2: 0.75}  # both pseudo-label rounds validate worse
    models = {r: nn.Linear(1, 1) for r in val_auc}
    seen_rounds = []

    def fit_round(r, data, pseudo_from):
        seen_rounds.append((r, len(data)))
        return models[r], FitResult({}, 1, val_auc[r], [{"epoch": 1, "round": r}])

    def score(model, images):  # every unlabelled image confidently class 1
        return np.tile([0.01, 0.99], (len(images), 1))

    config = SemiSupervisedConfig(method="pseudo_label", threshold=0.95, rounds=2)
    model, result = pseudo_label_rounds(config, labelled, pool, TaskLoss(Task.BINARY, 2),
                                        fit_round, score)
    assert seen_rounds == [(0, 4), (1, 10), (2, 10)]  # the pool was used
    assert model is models[0] and result.best_metric == 0.80
    assert [h["round"] for h in result.history] == [0, 1, 2]
    val_auc[2] = 0.9  # now the last round wins
    model, _ = pseudo_label_rounds(config, labelled, pool, TaskLoss(Task.BINARY, 2), fit_round, score)
    assert model is models[2]
