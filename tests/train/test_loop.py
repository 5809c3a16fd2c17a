"""The training loop: kill-and-resume to identical weights, best-epoch copies, early stopping."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from tiny_nets import subset

from medsight.data.dataset import Dataset
from medsight.data.sources.medmnist import from_medmnist
from medsight.errors import InvalidConfig
from medsight.models.torch_classifier import TorchClassifier
from medsight.train.checkpoint import LAST, load_checkpoint
from medsight.train.loop import LoopConfig, TrainEvent, _SelectionState


def _comparable(history):
    """History without timings, NaN as None (NaN != NaN)."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v)
         for k, v in h.items() if k != "time_s"}
        for h in history
    ]


class Kill(Exception):
    """Stands in for a crash / Ctrl-C in the middle of a run."""


@pytest.fixture
def breast(breastmnist):
    return from_medmnist(breastmnist)


def _params(**kw):
    base = dict(network="tiny_cnn_test", epochs=3, batch_size=32, lr=1e-2, schedule="cosine",
                augment={"preset": "ultrasound", "mixup": 0.2}, seed=3, deterministic=True,
                threads=2, device="cpu")
    return {**base, **kw}


@pytest.mark.parametrize("kill_at", [("epoch", 2), ("batch", 3)])
def test_killed_run_resumes_to_the_same_weights(breast, tmp_path, kill_at):
    train = subset(breast.split("train"), 120)
    val = breast.split("val")
    reference = TorchClassifier(**_params()).fit(train, val)

    stage, epoch = kill_at

    def crash(event: TrainEvent) -> None:
        if event.stage == stage and event.epoch == epoch and (stage == "epoch" or event.batch == 2):
            raise Kill()

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Kill):
        TorchClassifier(**_params(checkpoint_dir=str(ckpt)), progress=crash).fit(train, val)
    assert load_checkpoint(ckpt / LAST)["epoch"] == 2

    resumed = TorchClassifier(**_params(checkpoint_dir=str(ckpt), resume=True)).fit(train, val)
    assert resumed.resumed_from_ == 2
    ref_state, res_state = reference.model_.state_dict(), resumed.model_.state_dict()
    assert ref_state.keys() == res_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], res_state[key]), key
    assert _comparable(reference.history_) == _comparable(resumed.history_)
    assert resumed.best_epoch_ == reference.best_epoch_


def test_resume_refuses_a_checkpoint_of_another_run(breast, tmp_path):
    train = subset(breast.split("train"), 60)
    ckpt = str(tmp_path / "c")
    TorchClassifier(**_params(epochs=1, checkpoint_dir=ckpt)).fit(train)
    with pytest.raises(InvalidConfig, match="other settings or data"):
        TorchClassifier(**_params(epochs=1, lr=0.5, checkpoint_dir=ckpt, resume=True)).fit(train)
    with pytest.raises(InvalidConfig, match="checkpoint_dir"):
        TorchClassifier(resume=True).validate_params()


def test_best_weights_are_a_copy_of_the_best_epoch_not_the_last(breast, tmp_path):
    # validating on the training images with flipped labels: the better the model fits, the
    # worse the validation AUC, so the best epoch is an early one
    train = subset(breast.split("train"), 160)
    flipped = Dataset([replace(r, label=1 - r.label) for r in train.records], train.task,
                      train.classes, positive_class=train.positive_class)
    ckpt = tmp_path / "c"
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(event: TrainEvent) -> None:
        if event.stage == "epoch":
            snapshots[event.epoch] = load_checkpoint(ckpt / LAST)["model"]

    clf = TorchClassifier(**_params(epochs=4, schedule="constant", augment=None, seed=0,
                                    checkpoint_dir=str(ckpt)), progress=snapshot)
    clf.fit(train, flipped)
    aucs = [h["val_auc"] for h in clf.history_]
    assert clf.best_epoch_ == 1 + max(range(4), key=aucs.__getitem__)
    assert clf.best_epoch_ != 4, "precondition: the last epoch must not be the best"
    state = clf.model_.state_dict()
    best, last = snapshots[clf.best_epoch_], snapshots[4]
    assert all(torch.equal(state[k], best[k]) for k in state)
    assert not all(torch.equal(state[k], last[k]) for k in state)
    assert [h["best"] for h in clf.history_].count(True) >= 1


def test_selection_state_keeps_a_deep_copy():
    model = torch.nn.Linear(3, 1)
    sel = _SelectionState("max")
    assert sel.update(0.7, 1, model, keep=True)
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.mul_(-2.0)  # "training" goes on, the metric gets worse
    assert not sel.update(0.6, 2, model, keep=True)
    assert sel.best_epoch == 1 and sel.bad_epochs == 1
    assert torch.equal(sel.best_state["weight"], kept["weight"])
    assert not torch.equal(sel.best_state["weight"], model.weight)
    # an undefined metric (NaN) never beats a real one
    assert not sel.update(float("nan"), 3, model, keep=True)
    low = _SelectionState("min")
    assert low.update(0.5, 1, model, True) and low.update(0.4, 2, model, True)
    assert LoopConfig(monitor="brier").mode == "min" and LoopConfig(monitor="auc").mode == "max"


def test_early_stopping_and_progress_events(breast, capsys):
    train = subset(breast.split("train"), 160)
    flipped = Dataset([replace(r, label=1 - r.label) for r in train.records], train.task,
                      train.classes, positive_class=train.positive_class)
    events: list[TrainEvent] = []
    clf = TorchClassifier(**_params(epochs=6, schedule="constant", augment=None, seed=0,
                                    patience=1), progress=events.append)
    clf.fit(train, flipped)
    assert clf.stopped_early_ and len(clf.history_) < 6
    assert clf.history_[-1]["stopped_early"]
    epochs = [e for e in events if e.stage == "epoch"]
    batches = [e for e in events if e.stage == "batch"]
    assert len(epochs) == len(clf.history_)
    assert all(e.val_metric == h["val_auc"] for e, h in zip(epochs, clf.history_, strict=True))
    assert len(batches) == sum(e.batches for e in epochs)
    assert any(e.stage == "load_train" for e in events)
    assert capsys.readouterr().out == ""  # the library never prints
