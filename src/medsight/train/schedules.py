"""Learning-rate schedules, all stepped once per batch so they resume exactly from a checkpoint.

- ``step``: multiply by ``gamma`` at each milestone epoch; milestones below 1 are fractions of
  the run (the MedMNIST recipe: x0.1 at 50% and 75% of the epochs, the default);
- ``cosine``: linear warm-up for ``warmup_epochs``, then cosine decay to ``min_lr_ratio`` x lr;
- ``onecycle``: torch's `OneCycleLR` (warm-up to lr, anneal far below it);
- ``constant``: no change.

A schedule is named by a string or a mapping ``{"name": ..., <options>}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from medsight.errors import InvalidConfig

SCHEDULES = ("step", "cosine", "onecycle", "constant")
_OPTIONS = {
    "step": {"milestones", "gamma"},
    "cosine": {"warmup_epochs", "min_lr_ratio"},
    "onecycle": {"pct_start", "div_factor", "final_div_factor"},
    "constant": set(),
}


def parse_schedule(spec: str | Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """``"step"`` or ``{"name": "step", "gamma": 0.1}`` -> (name, options); checks both."""
    if spec is None:
        return "constant", {}
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping):
        options = dict(spec)
        name = options.pop("name", None)
    else:
        raise InvalidConfig(f"schedule must be a name or a mapping with 'name', got {spec!r}")
    if name not in SCHEDULES:
        raise InvalidConfig(f"unknown schedule {name!r}; known: {list(SCHEDULES)}")
    unknown = sorted(set(options) - _OPTIONS[name])
    if unknown:
        raise InvalidConfig(
            f"schedule {name!r} has no option(s) {unknown}; it accepts {sorted(_OPTIONS[name])}"
        )
    return name, options


def milestone_epochs(milestones: list[float], epochs: int) -> list[int]:
    """Milestones as epoch numbers: values below 1 are fractions of `epochs` (rounded down)."""
    out = []
    for m in milestones:
        m = float(m)
        if m <= 0:
            raise InvalidConfig(f"schedule milestones must be positive, got {m}")
        out.append(int(m * epochs) if m < 1 else int(m))
    return sorted(out)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    spec: str | Mapping[str, Any] | None,
    epochs: int,
    steps_per_epoch: int,
) -> LRScheduler:
    """The scheduler for `spec`, to be stepped after every optimizer step."""
    name, opt = parse_schedule(spec)
    steps_per_epoch = max(1, int(steps_per_epoch))
    total = max(1, epochs * steps_per_epoch)
    if name == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return OneCycleLR(
            optimizer,
            max_lr=max_lr,
            total_steps=total,
            pct_start=float(opt.get("pct_start", 0.3)),
            div_factor=float(opt.get("div_factor", 25.0)),
            final_div_factor=float(opt.get("final_div_factor", 1e4)),
            cycle_momentum=_has_momentum(optimizer),
        )
    if name == "step":
        bounds = milestone_epochs(list(opt.get("milestones", (0.5, 0.75))), epochs)
        gamma = float(opt.get("gamma", 0.1))

        def factor(step: int) -> float:
            epoch = step // steps_per_epoch
            return gamma ** sum(epoch >= b for b in bounds)

    elif name == "cosine":
        warm = int(round(float(opt.get("warmup_epochs", 0)) * steps_per_epoch))
        floor = float(opt.get("min_lr_ratio", 0.0))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            progress = min(1.0, (step - warm) / max(1, total - warm))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    else:

        def factor(step: int) -> float:
            return 1.0

    return LambdaLR(optimizer, factor)


def _has_momentum(optimizer: torch.optim.Optimizer) -> bool:
    defaults = optimizer.defaults
    return bool(defaults.get("momentum")) or "betas" in defaults
