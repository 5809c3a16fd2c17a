"""Learning-rate schedules and optimizers."""

from __future__ import annotations

import pytest
import torch

from medsight.errors import InvalidConfig
from medsight.train.optim import build_optimizer
from medsight.train.schedules import build_scheduler, milestone_epochs


def _lrs(spec, epochs=100, steps=3, lr=0.1, optimizer="sgd"):
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, optimizer, lr=lr)
    sched = build_scheduler(opt, spec, epochs, steps)
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule_is_the_medmnist_recipe():
    lrs = _lrs("step", epochs=100, steps=3)
    per_epoch = lrs[::3]
    assert per_epoch[49] == pytest.approx(0.1)
    assert per_epoch[50] == pytest.approx(0.01)
    assert per_epoch[74] == pytest.approx(0.01)
    assert per_epoch[75] == pytest.approx(0.001)
    assert milestone_epochs([0.5, 0.75], 10) == [5, 7]
    assert milestone_epochs([3, 8], 10) == [3, 8]


def test_cosine_warms_up_then_decays_to_the_floor():
    lrs = _lrs({"name": "cosine", "warmup_epochs": 2, "min_lr_ratio": 0.1}, epochs=10, steps=4)
    assert lrs[0] == pytest.approx(0.1 / 8)
    assert max(lrs) == pytest.approx(0.1)
    assert lrs[7] == pytest.approx(0.1)
    assert all(b <= a + 1e-12 for a, b in zip(lrs[8:], lrs[9:], strict=False))
    assert lrs[-1] == pytest.approx(0.01, rel=0.05)


def test_onecycle_peaks_at_the_learning_rate():
    lrs = _lrs({"name": "onecycle", "pct_start": 0.25}, epochs=8, steps=5, optimizer="adam")
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) == pytest.approx(0.1, rel=1e-3)
    assert lrs[-1] < 1e-4


def test_bad_schedules_and_optimizers_are_named():
    with pytest.raises(InvalidConfig, match="exponential"):
        _lrs("exponential")
    with pytest.raises(InvalidConfig, match="warmup"):
        _lrs({"name": "step", "warmup_epochs": 1})
    with pytest.raises(InvalidConfig, match="rmsprop"):
        build_optimizer(torch.nn.Linear(1, 1), "rmsprop")


def test_weight_decay_spares_biases_and_norm_parameters():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.05)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(model[0].weight)}
