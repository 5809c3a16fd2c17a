"""Map a heatmap from the model-input grid back onto the original image, undoing every crop,
resize and pad the preprocessing recorded (``metadata["geometry"]``, see preprocess.geometry)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsight.errors import MedsightError

#: steps that resample the pixel grid without recording an invertible index map
UNRECORDED_RESAMPLING = ("align",)


class HeatmapGeometryUnknown(MedsightError):
    """The preprocessing moved pixels in a way that cannot be undone, so a heatmap stays on the
    model-input grid; the message says which step or shape is the cause."""


def new_transforms(metadata: Mapping[str, Any], before: int = 0) -> list[dict[str, Any]]:
    """The index maps preprocessing added after the first `before` ones (those the input image
    already carried); `HeatmapGeometryUnknown` when a step resampled without recording one."""
    for entry in metadata.get("preprocess", []):
        if entry.get("step") in UNRECORDED_RESAMPLING:
            raise HeatmapGeometryUnknown(
                f"the {entry['step']!r} step resamples the image onto a reference grid; the heatmap "
                "is shown on the model-input grid, not on the original image"
            )
    return list(metadata.get("geometry", []))[before:]


def upsample(heat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A coarse map (e.g. CAM on a 7x7 feature grid) resampled onto the input grid `shape`,
    cell centres aligned as a resize would align them (linear, edge values held)."""
    heat = np.asarray(heat, dtype=np.float64)
    coords = []
    for n_in, n_out in zip(heat.shape, shape, strict=True):
        s = n_out / n_in
        coords.append((np.arange(n_out) - (s - 1) / 2) / s)
    return _sample(heat, coords, outside_zero=False)


def to_original(
    heat: np.ndarray, transforms: Sequence[Mapping[str, Any]], original_shape: Sequence[int]
) -> np.ndarray:
    """`heat` (on the model-input grid) resampled onto the original image's grid.

    `transforms` are the recorded index maps, first step first (``input = scale * output +
    offset`` per axis); original pixels that a crop removed get 0. `HeatmapGeometryUnknown` when
    the recorded shapes do not chain from `original_shape` to the heatmap's shape.
    """
    heat = np.asarray(heat, dtype=np.float64)
    shape = tuple(int(s) for s in original_shape)
    for t in transforms:
        if tuple(t["in_shape"]) != shape:
            raise HeatmapGeometryUnknown(
                f"a recorded {t['kind']} starts from shape {tuple(t['in_shape'])} but the image had "
                f"shape {shape} at that point: a step changed the grid without recording it"
            )
        shape = tuple(t["out_shape"])
    if shape != heat.shape:
        raise HeatmapGeometryUnknown(
            f"the preprocessed image has shape {shape}, the heatmap {heat.shape}"
        )
    coords = [np.arange(n, dtype=np.float64) for n in original_shape]
    for t in transforms:
        coords = [(c - o) / s for c, s, o in zip(coords, t["scale"], t["offset"], strict=True)]
    return _sample(heat, coords, outside_zero=True)


def _sample(heat: np.ndarray, coords: list[np.ndarray], outside_zero: bool) -> np.ndarray:
    """Multilinear interpolation of `heat` on the separable grid `coords` (one array per axis).

    Points within half a pixel of the border take the edge value; further out they are 0 when
    `outside_zero`, else the edge value too."""
    out = heat
    for axis, c in enumerate(coords):
        n = heat.shape[axis]
        clipped = np.clip(c, 0.0, n - 1.0)
        i0 = np.floor(clipped).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        w = clipped - i0
        view = [1] * out.ndim
        view[axis] = len(c)
        w = w.reshape(view)
        out = np.take(out, i0, axis=axis) * (1.0 - w) + np.take(out, i1, axis=axis) * w
        if outside_zero:
            keep = ((c >= -0.5) & (c <= n - 0.5)).reshape(view)
            out = np.where(keep, out, 0.0)
    return out
