"""Histogram of oriented gradients (``skimage.feature.hog``): shape and edge layout features.

The number of features depends on the image size: ``blocks_r * blocks_c * cells_per_block^2 *
orientations`` with ``blocks = (size // pixels_per_cell) - cells_per_block + 1`` per axis, so all
images given to one fitted extractor must give the same count (resize them to one size first).
Names are ``hog_0`` .. ``hog_{n-1}`` (with channel/slice prefixes, see ``features.base``).
"""

from __future__ import annotations

import numpy as np
from skimage.feature import hog

from medsight.errors import InvalidConfig, InvalidDataset
from medsight.features.base import ImageFeatureExtractor
from medsight.features.registry import register_feature

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")


def _pair(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) < 1 for v in pair):
        raise InvalidConfig(f"HOG: {what} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


@register_feature("hog")
class HOG(ImageFeatureExtractor):
    """HOG descriptor of each 2D image (or mid-slice of a volume).

    Parameters follow ``skimage.feature.hog``: ``orientations``, ``pixels_per_cell``,
    ``cells_per_block`` (int or pair), ``block_norm``, ``transform_sqrt``; plus ``channels`` and
    ``volume`` (see ``features.base``).
    """

    planar = True

    def __init__(
        self,
        orientations: int = 9,
        pixels_per_cell: int | tuple[int, int] = (8, 8),
        cells_per_block: int | tuple[int, int] = (2, 2),
        block_norm: str = "L2-Hys",
        transform_sqrt: bool = False,
        channels: str = "luminance",
        volume: str = "middle",
    ):
        self.orientations = orientations
        self.pixels_per_cell = pixels_per_cell
        self.cells_per_block = cells_per_block
        self.block_norm = block_norm
        self.transform_sqrt = transform_sqrt
        self.channels = channels
        self.volume = volume

    def _check_params(self) -> None:
        if int(self.orientations) < 1:
            raise InvalidConfig(f"HOG: orientations must be >= 1, got {self.orientations}")
        _pair(self.pixels_per_cell, "pixels_per_cell")
        _pair(self.cells_per_block, "cells_per_block")
        if self.block_norm not in BLOCK_NORMS:
            raise InvalidConfig(
                f"HOG: block_norm must be one of {BLOCK_NORMS}, got {self.block_norm!r}"
            )

    def _n_features(self, shape: tuple[int, ...]) -> int:
        cell = _pair(self.pixels_per_cell, "pixels_per_cell")
        block = _pair(self.cells_per_block, "cells_per_block")
        blocks = [s // c - b + 1 for s, c, b in zip(shape, cell, block, strict=True)]
        if min(blocks) < 1:
            raise InvalidConfig(
                f"HOG: images of shape {tuple(shape)} are too small for pixels_per_cell={cell} "
                f"and cells_per_block={block}; use smaller cells or larger images"
            )
        return blocks[0] * blocks[1] * block[0] * block[1] * int(self.orientations)

    def _view_names(self, shape: tuple[int, ...]) -> list[str]:
        return [f"hog_{i}" for i in range(self._n_features(shape))]

    def _extract(self, views: np.ndarray) -> np.ndarray:
        out = np.empty((len(views), self._n_features(views.shape[1:])), dtype=np.float64)
        cell = _pair(self.pixels_per_cell, "pixels_per_cell")
        block = _pair(self.cells_per_block, "cells_per_block")
        if self.transform_sqrt and views.min() < 0:
            raise InvalidDataset(
                "HOG: transform_sqrt=True needs non-negative pixels; got negative values "
                "(use transform_sqrt=False or rescale to 0..1 first)"
            )
        for i, plane in enumerate(views):
            out[i] = hog(
                plane,
                orientations=int(self.orientations),
                pixels_per_cell=cell,
                cells_per_block=block,
                block_norm=self.block_norm,
                transform_sqrt=bool(self.transform_sqrt),
                feature_vector=True,
            )
        return out
