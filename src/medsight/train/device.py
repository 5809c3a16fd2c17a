"""Where and how training runs: device, CPU threads, determinism, mixed precision, memory layout.

One `RunSettings` object carries every switch, so an estimator exposes them as plain parameters
(``device="auto"``, ``precision="auto"``, ``deterministic=True`` ...) and the loop never asks
the hardware twice. `settings.activate()` applies the process-wide switches (threads,
deterministic algorithms) for the duration of a fit or predict and restores them afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medsight.errors import InvalidConfig
from medsight.models.torch_inference import resolve_device

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks and container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class CpuShare:
    """How many cores other processes leave idle, measured between two calls of `threads`.

    On a shared machine a torch job with one thread per core stalls whenever the OS parks one
    of its threads for another process: every parallel op waits at a barrier for the slowest
    thread. Fewer threads than cores then run *faster*. `threads` compares the machine's busy
    time (``/proc/stat``) with this process's own CPU time over the window since the previous
    call, and returns the cores nobody else used (at least 1). Thread count changes only the
    float summation order, not what is computed.
    """

    MIN_WINDOW_S = 1.0

    def __init__(self) -> None:
        self._last: tuple[float, float, float, float] | None = None
        self.choice: int | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:  # pragma: no cover - non-Linux
            return None
        ticks = [float(v) for v in fields[:8]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return time.monotonic(), time.process_time(), sum(ticks) - idle, sum(ticks)

    def threads(self, limit: int) -> int:
        """Cores left idle by others since the last call (`limit` before a full window)."""
        now = self._sample()
        if now is None:
            return limit
        last = self._last
        if last is not None and now[0] - last[0] < self.MIN_WINDOW_S:
            return self.choice or limit
        self._last = now
        if last is None:
            return self.choice or limit
        wall, own = now[0] - last[0], now[1] - last[1]
        total = now[3] - last[3]
        if total <= 0:
            return self.choice or limit
        cpus = os.cpu_count() or limit
        busy_cores = (now[2] - last[2]) / total * cpus
        others = max(0.0, busy_cores - own / wall)
        self.choice = max(1, min(limit, int(cpus - others + 0.3)))
        return self.choice


_CPU_SHARE = CpuShare()


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all GPUs included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class RunSettings:
    """The hardware switches of one fit/predict.

    ``precision``: ``"fp32"``; ``"fp16"`` (CUDA autocast + gradient scaling); ``"bf16"`` (autocast
    to bfloat16 on CUDA or CPU, no scaling needed); ``"auto"`` = bf16 on GPUs that support it,
    fp16 on older GPUs, fp32 on the CPU. ``threads``: CPU threads for torch ops; None = every core
    this process may use; ``"adaptive"`` = the cores other processes leave idle, re-measured by
    `adapt_threads` every epoch (faster on a shared, busy machine, but the summation order then
    follows the load, so it is opt-in and ignored in deterministic mode).
    ``deterministic`` turns on torch's deterministic algorithms
    (warning only where none exists) and disables cuDNN autotuning, so a seeded run is
    repeatable and a resumed run ends on the same weights.
    """

    device: torch.device
    precision: str = "fp32"
    threads: int | str | None = None
    deterministic: bool = False
    channels_last: bool = False

    @classmethod
    def create(
        cls,
        device: str | torch.device = "auto",
        precision: str = "auto",
        threads: int | str | None = None,
        deterministic: bool = False,
        channels_last: bool = False,
    ) -> RunSettings:
        """Resolve ``"auto"`` choices against the hardware present."""
        dev = resolve_device(device)
        if precision not in PRECISIONS:
            raise InvalidConfig(f"precision {precision!r} is not one of {list(PRECISIONS)}")
        if precision == "auto":
            if dev.type == "cuda":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            else:
                precision = "fp32"
        if precision == "fp16" and dev.type != "cuda":
            raise InvalidConfig("precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
        if threads == "adaptive":
            pass
        elif threads is not None and (isinstance(threads, str) or int(threads) < 1):
            raise InvalidConfig(
                f"threads must be a positive number of CPU threads, 'adaptive' or None; got {threads!r}")
        return cls(dev, precision, threads, bool(deterministic), bool(channels_last))

    # -- process-wide switches ------------------------------------------------------------
    @contextlib.contextmanager
    def activate(self) -> Iterator[RunSettings]:
        """Apply threads and determinism while the block runs; restore the previous values."""
        old_threads = torch.get_num_threads()
        old_det = torch.are_deterministic_algorithms_enabled()
        old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        old_bench = torch.backends.cudnn.benchmark
        old_cudnn_det = torch.backends.cudnn.deterministic
        torch.set_num_threads(self._thread_count())
        if self.deterministic:
            # cuBLAS needs this before its first use to be deterministic; harmless on CPU.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        try:
            yield self
        finally:
            torch.set_num_threads(old_threads)
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
            torch.backends.cudnn.benchmark = old_bench
            torch.backends.cudnn.deterministic = old_cudnn_det

    @property
    def adapts_threads(self) -> bool:
        """True when the thread count follows the machine's load (see `CpuShare`)."""
        return (self.threads == "adaptive" and not self.deterministic
                and self.device.type == "cpu")

    def _thread_count(self) -> int:
        if self.threads not in (None, "adaptive"):
            return int(self.threads)
        if not self.adapts_threads:
            return available_cpus()
        return _CPU_SHARE.choice or available_cpus()

    def adapt_threads(self) -> int:
        """Re-measure the idle cores and set torch's thread count (when `adapts_threads`)."""
        if self.adapts_threads:
            torch.set_num_threads(_CPU_SHARE.threads(available_cpus()))
        return torch.get_num_threads()

    # -- per-step helpers -------------------------------------------------------------------
    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass (a no-op in fp32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 (disabled, i.e. a pass-through, for every other precision)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def prepare_model(self, model: torch.nn.Module, spatial_dims: int) -> torch.nn.Module:
        """Move `model` to the device (channels-last layout when asked and the data is 2D/3D)."""
        model = model.to(self.device)
        fmt = self.memory_format(spatial_dims)
        if fmt is not None:
            model = model.to(memory_format=fmt)
        return model

    def memory_format(self, spatial_dims: int) -> torch.memory_format | None:
        if not self.channels_last:
            return None
        return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d

    def to_device(self, x: torch.Tensor, spatial_dims: int | None = None) -> torch.Tensor:
        """Copy a batch to the device (asynchronously from pinned memory) in the model's layout."""
        x = x.to(self.device, non_blocking=self.device.type == "cuda")
        if spatial_dims is not None and x.is_floating_point():
            fmt = self.memory_format(spatial_dims)
            if fmt is not None:
                x = x.contiguous(memory_format=fmt)
        return x

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"
