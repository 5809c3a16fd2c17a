"""The one chunked inference loop over cached images, and probabilities through it.

`map_batches` runs a function batch by batch on the run's device (inference mode, autocast);
`predict_proba` runs a network's `ProbabilityModel` (task link + flip views) through it, so
validation, threshold choice and ``TorchClassifier.predict_proba`` compute the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from medsight.models.torch_inference import FlipView, ProbabilityModel
from medsight.train.data import CachedImages
from medsight.train.device import RunSettings
from medsight.train.losses import TaskLoss


def map_batches(
    fn: Callable[[torch.Tensor], torch.Tensor],
    data: CachedImages,
    settings: RunSettings,
    batch_size: int,
    width: int,
    rows: Sequence[int] | None = None,
) -> np.ndarray:
    """(N, width) float64 rows of ``fn(batch)`` for every cached image (or the `rows` given),
    in order."""
    order = list(range(len(data))) if rows is None else list(rows)
    out = []
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            x, _, _ = data[order[start:start + batch_size]]
            x = settings.to_device(x, x.ndim - 2)
            with settings.autocast():
                out.append(fn(x).float().cpu().numpy())
    if not out:
        return np.zeros((0, width))
    return np.concatenate(out).astype(np.float64)


def predict_proba(
    model: nn.Module,
    data: CachedImages,
    loss: TaskLoss,
    settings: RunSettings,
    batch_size: int = 256,
    flips: Sequence[FlipView] | None = None,
    rows: Sequence[int] | None = None,
) -> np.ndarray:
    """Probabilities for every cached image, or the `rows` given (mean over the flip views when
    `flips` is given)."""
    model.eval()
    prob = ProbabilityModel(model, loss.task, loss.coral, flips)
    return map_batches(prob, data, settings, batch_size, loss.num_classes, rows)
