"""Move boxes with the pixel grid: through the index maps preprocessing records
(``metadata["geometry"]``, see `preprocess.geometry.record_transform`) forward onto the model-input
grid for training, and back onto the original image for predictions.

Each recorded map says ``input index = scale * output index + offset`` per spatial axis with pixel
centres at integer indices; box corners are pixel edges (`medsight.boxes`), so an edge ``e``
sits at index ``e - 0.5``. Axis 0 of a map is rows (y), axis 1 columns (x).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsight.errors import MedsightError


class BoxGeometryUnknown(MedsightError):
    """A preprocessing step moved pixels without recording how, so boxes cannot follow."""


def _maps(transforms: Sequence[Mapping[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for t in transforms:
        scale, offset = np.asarray(t["scale"], np.float64), np.asarray(t["offset"], np.float64)
        if scale.shape != (2,) or offset.shape != (2,):
            raise BoxGeometryUnknown(
                f"a recorded {t.get('kind', '?')} map has {scale.size} axes; boxes need 2D images"
            )
        out.append((scale, offset))
    return out


def _as_xyxy(xyxy: np.ndarray) -> np.ndarray:
    return np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)


def boxes_forward(
    xyxy: np.ndarray, transforms: Sequence[Mapping[str, Any]], clip_shape: Sequence[int] | None = None
) -> np.ndarray:
    """Boxes on the original image -> boxes on the grid after `transforms` (first step first).

    With `clip_shape` ((rows, cols) of the final grid) corners are clipped to it, as a crop cuts
    boxes. Returns (N, 4) float64."""
    b = _as_xyxy(xyxy).copy()
    for scale, offset in _maps(transforms):
        sy, sx = scale
        oy, ox = offset
        b[:, [0, 2]] = (b[:, [0, 2]] - 0.5 - ox) / sx + 0.5
        b[:, [1, 3]] = (b[:, [1, 3]] - 0.5 - oy) / sy + 0.5
    if clip_shape is not None:
        b = clip_boxes(b, clip_shape)
    return b


def boxes_back(
    xyxy: np.ndarray, transforms: Sequence[Mapping[str, Any]], original_shape: Sequence[int] | None = None
) -> np.ndarray:
    """Boxes on the model-input grid -> boxes on the original image (the inverse of
    `boxes_forward`), clipped to `original_shape` ((rows, cols)) when given. (N, 4) float64."""
    b = _as_xyxy(xyxy).copy()
    for scale, offset in reversed(_maps(transforms)):
        sy, sx = scale
        oy, ox = offset
        b[:, [0, 2]] = sx * (b[:, [0, 2]] - 0.5) + ox + 0.5
        b[:, [1, 3]] = sy * (b[:, [1, 3]] - 0.5) + oy + 0.5
    if original_shape is not None:
        b = clip_boxes(b, original_shape)
    return b


def clip_boxes(xyxy: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Corners clipped into an image of (rows, cols) `shape`."""
    b = _as_xyxy(xyxy).copy()
    rows, cols = float(shape[0]), float(shape[1])
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, cols)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, rows)
    return b
