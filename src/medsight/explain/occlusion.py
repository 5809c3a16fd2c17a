"""Occlusion sensitivity (Zeiler & Fergus 2014): how much a class probability drops when a patch
of the model input is hidden, for models without class activation maps (classical, AlexNet)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from medsight.errors import InvalidConfig
from medsight.explain.cam import normalise

Forward = Callable[[np.ndarray], np.ndarray]


def patch_grid(shape: tuple[int, ...], windows: int) -> tuple[tuple[int, ...], list[list[int]]]:
    """Patch size per axis (about 1/`windows` of the side) and the patch starts along each axis
    at half-patch strides, the last one flush with the border so every pixel is covered."""
    size = tuple(max(1, -(-s // windows)) for s in shape)
    starts = []
    for s, w in zip(shape, size, strict=True):
        stride = max(1, w // 2)
        axis = list(range(0, max(s - w, 0) + 1, stride))
        if axis[-1] + w < s:
            axis.append(s - w)
        starts.append(axis)
    return size, starts


def _patches(starts: list[list[int]]) -> Iterator[tuple[int, ...]]:
    grids = np.meshgrid(*[np.asarray(a) for a in starts], indexing="ij")
    yield from zip(*(g.ravel().tolist() for g in grids), strict=True)


def occlusion_map(
    forward: Forward,
    x: np.ndarray,
    class_index: int,
    windows: int = 8,
    batch_size: int = 32,
) -> np.ndarray:
    """Occlusion heatmap of one preprocessed sample `x` (C, *spatial) for `class_index`.

    Each patch (see `patch_grid`) is replaced by the sample's per-channel mean; the drop of the
    class probability is credited to every pixel of the patch and averaged where patches
    overlap. `forward` maps a (N, C, *spatial) float32 batch to (N, K) probabilities. Returns
    the positive part scaled to [0, 1] (zeros when no patch lowers the probability).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (3, 4):
        raise InvalidConfig(f"occlusion needs one (C, *spatial) sample, got shape {x.shape}")
    if windows < 1 or batch_size < 1:
        raise InvalidConfig("occlusion: windows and batch_size must be >= 1")
    shape = x.shape[1:]
    size, starts = patch_grid(shape, windows)
    fill = x.reshape(x.shape[0], -1).mean(axis=1).reshape((-1,) + (1,) * len(shape))
    base = float(np.asarray(forward(x[None]))[0, class_index])
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.float64)
    patches = list(_patches(starts))
    for i in range(0, len(patches), batch_size):
        chunk = patches[i:i + batch_size]
        batch = np.repeat(x[None], len(chunk), axis=0)
        regions = [tuple(slice(a, a + w) for a, w in zip(p, size, strict=True)) for p in chunk]
        for j, region in enumerate(regions):
            batch[(j, slice(None), *region)] = fill
        probs = np.asarray(forward(batch))[:, class_index]
        for region, p in zip(regions, probs, strict=True):
            total[region] += base - float(p)
            count[region] += 1.0
    return normalise(total / np.maximum(count, 1.0))
