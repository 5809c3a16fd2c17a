"""Task losses: cross-entropy options, multilabel BCE, the CORAL ordinal head and pseudo-labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsight.data.dataset import Task
from medsight.errors import InvalidConfig
from medsight.models.torch_inference import CumulativeLinkHead
from medsight.train.losses import (
    TaskLoss,
    balanced_weights,
    class_weight_tensor,
    expected_grade,
)


def test_cross_entropy_with_weights_and_smoothing_matches_torch():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    w = torch.tensor([1.0, 2.0, 0.5])
    loss = TaskLoss(Task.MULTICLASS, 3, w, label_smoothing=0.1)
    expect = F.cross_entropy(logits, y, weight=w, label_smoothing=0.1, reduction="none")
    assert torch.allclose(loss.per_sample(logits, y), expect)
    assert torch.allclose(loss.proba(logits).sum(1), torch.ones(6))


def test_balanced_weights_are_sklearn_style():
    w = balanced_weights(Task.BINARY, np.array([0, 0, 0, 1]), 2)
    assert torch.allclose(w, torch.tensor([4 / (2 * 3), 4 / (2 * 1)]))
    ml = balanced_weights(Task.MULTILABEL, np.array([[1, 0], [0, 0], [0, 1], [0, 1]]), 2)
    assert torch.allclose(ml, torch.tensor([3.0, 1.0]))  # negatives / positives per label
    with pytest.raises(InvalidConfig, match="3 positive numbers"):
        class_weight_tensor([1, 2], Task.MULTICLASS, np.array([0, 1, 2]), 3)


def test_multilabel_uses_independent_sigmoids():
    logits = torch.tensor([[0.0, 2.0], [-3.0, 1.0]])
    loss = TaskLoss(Task.MULTILABEL, 2)
    assert torch.allclose(loss.proba(logits), torch.sigmoid(logits))
    t = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    expect = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean(1)
    assert torch.allclose(loss.per_sample(logits, t), expect)
    labels, conf = loss.pseudo_targets(torch.tensor([[0.9, 0.2], [0.6, 0.99]]))
    assert labels.tolist() == [[1.0, 0.0], [1.0, 1.0]]
    assert torch.allclose(conf, torch.tensor([0.8, 0.6]))  # the least certain label


def test_coral_head_gives_valid_rank_consistent_class_probabilities():
    head = CumulativeLinkHead(5)
    with torch.no_grad():
        head.gaps.copy_(torch.tensor([-3.0, 2.0, 0.1]))  # uneven but always increasing
    th = head.thresholds()
    assert (th[1:] > th[:-1]).all()
    loss = TaskLoss(Task.ORDINAL, 5)
    assert loss.network_outputs == 1 and isinstance(loss.head(), CumulativeLinkHead)
    scores = torch.linspace(-6, 6, 25).unsqueeze(1)
    p = loss.proba(head(scores))
    assert p.shape == (25, 5) and (p >= 0).all()
    assert torch.allclose(p.sum(1), torch.ones(25))
    grades = expected_grade(p.detach().numpy())
    assert (np.diff(grades) > 0).all()  # a higher score always means a higher expected grade


def test_coral_training_learns_the_grades():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 40).unsqueeze(1)
    y = torch.bucketize(x[:, 0], torch.tensor([-0.5, 0.0, 0.5]))  # 4 ordered grades
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), CumulativeLinkHead(4))
    loss = TaskLoss(Task.ORDINAL, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    first = float(loss(model(x), y).detach())
    for _ in range(300):
        opt.zero_grad()
        loss(model(x), y).backward()
        opt.step()
    assert float(loss(model(x), y).detach()) < 0.5 * first
    acc = (loss.proba(model(x)).argmax(1) == y).float().mean()
    assert acc > 0.85


def test_ordinal_as_plain_classes_and_bad_options():
    loss = TaskLoss(Task.ORDINAL, 4, ordinal="ce")
    assert loss.network_outputs == 4 and loss.head() is None
    with pytest.raises(InvalidConfig, match="ordinal"):
        TaskLoss(Task.ORDINAL, 4, ordinal="regression")
    with pytest.raises(InvalidConfig, match="label_smoothing"):
        TaskLoss(Task.BINARY, 2, label_smoothing=1.0)
