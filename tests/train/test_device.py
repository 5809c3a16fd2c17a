"""Run settings: device and precision resolution, process switches restored, bf16 on CPU."""

from __future__ import annotations

import pytest
import torch

from medsight.errors import InvalidConfig
from medsight.models.torch_inference import resolve_device
from medsight.train.device import RunSettings, available_cpus


def test_auto_resolves_to_the_hardware_present():
    s = RunSettings.create("auto", "auto")
    if torch.cuda.is_available():
        assert s.device.type == "cuda" and s.precision in ("bf16", "fp16")
    else:
        assert s.device.type == "cpu" and s.precision == "fp32"
    assert available_cpus() >= 1


def test_bad_switches_are_named():
    with pytest.raises(InvalidConfig, match="fp16"):
        RunSettings.create("cpu", "fp16")
    with pytest.raises(InvalidConfig, match="precision"):
        RunSettings.create("cpu", "fp8")
    with pytest.raises(InvalidConfig, match="torch device"):
        resolve_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidConfig, match="CUDA is not available"):
            resolve_device("cuda")


def test_activate_applies_and_restores_threads_and_determinism():
    before_threads = torch.get_num_threads()
    before_det = torch.are_deterministic_algorithms_enabled()
    s = RunSettings.create("cpu", "fp32", threads=1, deterministic=True)
    with s.activate():
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.get_num_threads() == before_threads
    assert torch.are_deterministic_algorithms_enabled() == before_det


def test_bf16_autocast_on_cpu_and_channels_last_layout():
    s = RunSettings.create("cpu", "bf16", channels_last=True)
    conv = s.prepare_model(torch.nn.Conv2d(2, 4, 3), spatial_dims=2)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = s.to_device(torch.randn(2, 2, 8, 8), spatial_dims=2)
    assert x.is_contiguous(memory_format=torch.channels_last)
    with s.autocast():
        y = conv(x)
    assert y.dtype == torch.bfloat16
    assert not s.grad_scaler().is_enabled()
