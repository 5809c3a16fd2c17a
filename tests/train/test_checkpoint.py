"""Checkpoints: atomic replacement, RNG capture/restore, deep copies of weights."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from medsight.errors import BundleIntegrityError
from medsight.train import checkpoint as ck


def test_save_is_atomic_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "run" / "last.pt"
    ck.save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    assert ck.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["epoch"] == 1  # the previous checkpoint survived
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BundleIntegrityError, match="cannot be read"):
        ck.load_checkpoint(bad)
    with pytest.raises(BundleIntegrityError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "none.pt")


def test_rng_states_round_trip_through_a_checkpoint_file(tmp_path):
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.rand(5, generator=gen)  # advance away from the seed
    ck.save_checkpoint(tmp_path / "c.pt", {"rng": ck.capture_rng({"loader": gen})})
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    gen.manual_seed(99)
    ck.restore_rng(ck.load_checkpoint(tmp_path / "c.pt")["rng"], {"loader": gen})
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and torch.equal(first[3], again[3])


def test_copy_state_is_independent_of_the_live_model():
    model = torch.nn.Linear(2, 2)
    snap = ck.copy_state(model.state_dict())
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(snap["weight"], model.weight)
    assert torch.equal(snap["weight"] + 1.0, model.weight)
