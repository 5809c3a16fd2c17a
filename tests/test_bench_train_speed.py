"""bench/train_speed.py in a tiny mode: both loops report images/s, and they compute the same thing.

A tiny CNN on 64 BreastMNIST images keeps this to seconds; the full benchmark (resnet18_28, all
546 images) is ``.venv/bin/python bench/train_speed.py --write``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_module, shared_path
from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "bench" / "train_speed.py"


def _bench():
    return load_module("train_speed", BENCH)


def _tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2),
    )


@pytest.fixture(scope="module")
def breast():
    path = shared_path("medmnist", "breastmnist.npz")
    ts = _bench()
    images, labels = ts.load_breastmnist(path)
    return images[:64], labels[:64]


pytestmark = pytest.mark.usefixtures("two_torch_threads")


def test_measure_reports_both_loops_images_per_second(breast):
    ts = _bench()
    images, labels = breast
    variants = [ts.VARIANTS["plain"], ts.VARIANTS["medsight"], ts.VARIANTS["+channels_last"]]
    out = ts.measure(variants, _tiny, images, labels, rounds=1, warmup=1, batch_size=32)
    assert list(out["variants"]) == ["plain", "medsight", "+channels_last"]
    for v in out["variants"].values():
        assert math.isfinite(v["images_per_s"]) and v["images_per_s"] > 0
        assert len(v["rounds_images_per_s"]) == 2  # warm-up + 1 measured round
        assert v["ratio_min"] <= v["ratio"] <= v["ratio_max"]
    assert out["variants"]["plain"]["ratio"] == pytest.approx(1.0)
    section = ts.render({
        "hardware": {"cpu": "test cpu", "cores": 2, "simd": "avx2", "torch": torch.__version__},
        "flags": "avx2 yes", "threads": 2, "load_before": [1.0], "load_after": [1.0],
        "speed": out,
        "check": {"variant": "+channels_last", "steps": 2, "batch_size": 32, "max_rel_diff": 0.0,
                  "plain_losses": [0.7, 0.6], "medsight_losses": [0.7, 0.6]},
    })
    assert section.startswith(ts.HEADING)
    assert "| plain |" in section and "| +channels_last |" in section


def test_medsight_loop_follows_the_plain_loops_loss_curve(breast):
    ts = _bench()
    images, labels = breast
    check = ts.check_same_result(_tiny, images, labels, ts.VARIANTS["+channels_last"],
                                 batch_size=16)
    assert check["steps"] == 4
    # same batches, same initial weights: the curves agree to float rounding, while the
    # loss itself moves by far more than that over the steps (so a different order would show)
    assert check["max_rel_diff"] < 1e-4
    plain = np.asarray(check["plain_losses"])
    assert np.ptp(plain) > 100 * check["max_rel_diff"] * plain.max()
    # NCHW medsight runs the very same kernels as the plain loop: bit-for-bit the same losses
    exact = ts.check_same_result(_tiny, images, labels, ts.VARIANTS["medsight"], batch_size=16)
    assert exact["max_rel_diff"] < 1e-6


def test_a_different_batch_order_is_detected(breast):
    ts = _bench()
    images, labels = breast
    same = ts.PlainLoop(_tiny, images, labels, 16, seed=0).epoch()
    shuffled = ts.PlainLoop(_tiny, images, labels, 16, seed=0)
    shuffled.loader = torch.utils.data.DataLoader(
        shuffled.loader.dataset, batch_size=16, shuffle=True,
        generator=torch.Generator().manual_seed(1))
    losses = shuffled.epoch()
    diff = max(abs(a - b) / b for a, b in zip(losses, same, strict=True))
    assert diff > 1e-3


def test_cpu_share_gives_threads_only_to_cores_other_processes_leave_idle(monkeypatch):
    from medsight.train import device

    share = device.CpuShare()
    monkeypatch.setattr(device.os, "cpu_count", lambda: 2)
    # samples: (wall s, own cpu s, busy ticks, total ticks) of a 2-core machine
    samples = iter([
        (0.0, 0.0, 0.0, 0.0),
        (10.0, 0.0, 360.0, 400.0),   # others kept 1.8 cores busy, this process was idle
        (20.0, 10.0, 560.0, 800.0),  # this process used 1 core, others 0.0
        (20.5, 10.0, 560.0, 800.0),  # a window under a second: keep the last choice
    ])
    monkeypatch.setattr(share, "_sample", lambda: next(samples))
    assert share.threads(2) == 2  # first call: no window yet, all cores
    assert share.threads(2) == 1
    assert share.threads(2) == 2
    assert share.threads(2) == 2


def test_only_free_running_cpu_settings_adapt_their_threads():
    from medsight.train.device import RunSettings

    assert RunSettings.create("cpu", "fp32", threads="adaptive").adapts_threads
    assert not RunSettings.create("cpu", "fp32").adapts_threads  # opt-in only
    assert not RunSettings.create("cpu", "fp32", threads=2).adapts_threads
    assert not RunSettings.create("cpu", "fp32", threads="adaptive", deterministic=True).adapts_threads
    with RunSettings.create("cpu", "fp32", deterministic=True).activate() as s:
        assert s.adapt_threads() == torch.get_num_threads()
