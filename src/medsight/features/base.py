"""Shared machinery of the image feature extractors: input forms, channels, volumes and names.

Every extractor is a scikit-learn transformer (``fit``/``transform``/``get_feature_names_out``)
that accepts as ``X`` either

* a numpy array of already-preprocessed pixels: ``(N, H, W)`` (one channel), ``(N, C, H, W)``
  or ``(N, C, D, H, W)`` (volumes) -- the classical pipeline passes a float ``(N, C, H, W)``
  array of one fixed size; or
* a sequence of medsight ``Image`` objects (or ``Sample`` objects, whose ``.image`` is used, or
  per-sample arrays laid out like ``Image.pixels``). Images of different sizes are allowed; they
  are processed in groups of equal shape.

Channels: by default features are computed on the luminance (one channel: itself; three
channels: ITU-R BT.601 weights 0.299/0.587/0.114, as Pillow's "L" mode; any other count: the
channel mean). ``channels="per_channel"`` computes them on every channel; names then start with
``c0_``, ``c1_``, ...

Volumes ``(C, D, H, W)``: whole-image statistics use every voxel. The 2D descriptors (HOG, LBP,
GLCM) use the middle slice along the first spatial axis (``volume="middle"``) or the three
orthogonal mid-slices (``volume="orthogonal"``; names then carry ``ax0_``/``ax1_``/``ax2_`` for the
slice taken across spatial axis 0, 1 or 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from medsight.errors import InvalidConfig, InvalidDataset
from medsight.io.image import Image

CHANNEL_MODES = ("luminance", "per_channel")
VOLUME_MODES = ("middle", "orthogonal")
LUMINANCE_RGB = np.array([0.299, 0.587, 0.114])
CHUNK = 512  # samples converted to float64 at a time, to bound memory


@dataclass
class PixelGroup:
    """Samples of one shape, stacked: ``pixels`` is ``(n, C, *spatial)``; ``index`` their rows."""

    index: np.ndarray
    pixels: np.ndarray
    sources: list[str]


def _sample_pixels(item: Any, i: int) -> tuple[np.ndarray, str]:
    if isinstance(item, Image):
        return item.pixels, item.source
    image = getattr(item, "image", None)
    if isinstance(image, Image):
        return image.pixels, image.source
    arr = np.asarray(item)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim not in (3, 4):
        raise InvalidDataset(
            f"feature input item {i} must be an Image or an array (C,H,W)/(C,D,H,W); "
            f"got {type(item).__name__} of shape {arr.shape}"
        )
    return arr, f"<item {i}>"


def group_pixels(X: Any) -> tuple[int, list[PixelGroup]]:
    """Normalise any accepted input form to groups of equally shaped samples (see module doc)."""
    if isinstance(X, np.ndarray) or (hasattr(X, "__array__") and not isinstance(X, Sequence)):
        arr = np.asarray(X)
        if arr.ndim == 3:
            arr = arr[:, None]
        if arr.ndim not in (4, 5) or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InvalidDataset(
                "feature input array must be (N,H,W), (N,C,H,W) or (N,C,D,H,W) with N, C > 0; "
                f"got shape {arr.shape}"
            )
        n = arr.shape[0]
        return n, [PixelGroup(np.arange(n), arr, [f"<row {i}>" for i in range(n)])]
    if not isinstance(X, Sequence) or isinstance(X, (str, bytes)) or len(X) == 0:
        raise InvalidDataset(
            "feature input must be a non-empty sequence of Images or an array (N,C,H,W); "
            f"got {type(X).__name__}"
        )
    by_shape: dict[tuple[int, ...], list[int]] = {}
    pixels: list[np.ndarray] = []
    sources: list[str] = []
    for i, item in enumerate(X):
        px, src = _sample_pixels(item, i)
        pixels.append(px)
        sources.append(src)
        by_shape.setdefault(px.shape, []).append(i)
    groups = [
        PixelGroup(np.array(idx), np.stack([pixels[i] for i in idx]), [sources[i] for i in idx])
        for idx in by_shape.values()
    ]
    return len(X), groups


def luminance(pixels: np.ndarray) -> np.ndarray:
    """``(n, C, *spatial)`` -> ``(n, *spatial)`` float64: grey itself, BT.601 for RGB, else mean."""
    c = pixels.shape[1]
    if c == 1:
        return pixels[:, 0].astype(np.float64)
    if c == 3:
        return np.tensordot(pixels.astype(np.float64), LUMINANCE_RGB, axes=([1], [0]))
    return pixels.astype(np.float64).mean(axis=1)


def mid_slices(volumes: np.ndarray, mode: str) -> list[tuple[str, np.ndarray]]:
    """2D planes ``(n, h, w)`` of ``(n, D, H, W)`` volumes: the middle axial slice or all three."""
    d, h, w = volumes.shape[1:]
    if mode == "middle":
        return [("", volumes[:, d // 2])]
    return [
        ("ax0_", volumes[:, d // 2]),
        ("ax1_", volumes[:, :, h // 2]),
        ("ax2_", volumes[:, :, :, w // 2]),
    ]


class ImageFeatureExtractor(TransformerMixin, BaseEstimator):
    """Base of the extractors: turns images into views (arrays ``(n, *shape)``) and stacks features.

    Subclasses set ``planar`` (True: a 2D descriptor, volumes are sliced) and implement
    ``_view_names(shape)`` and ``_extract(views)``; their constructors store arguments as-is and
    must accept ``channels`` (and ``volume`` when planar).
    """

    planar: ClassVar[bool] = True

    # -- hooks --------------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Raise InvalidConfig for bad constructor arguments (called by fit)."""

    def _view_names(self, shape: tuple[int, ...]) -> list[str]:
        raise NotImplementedError

    def _extract(self, views: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- machinery ----------------------------------------------------------------------------
    def _check_common(self) -> None:
        channels = getattr(self, "channels", "luminance")
        if channels not in CHANNEL_MODES:
            raise InvalidConfig(
                f"{type(self).__name__}: channels must be one of {CHANNEL_MODES}, got {channels!r}"
            )
        volume = getattr(self, "volume", "middle")
        if volume not in VOLUME_MODES:
            raise InvalidConfig(
                f"{type(self).__name__}: volume must be one of {VOLUME_MODES}, got {volume!r}"
            )
        self._check_params()

    def _views(self, pixels: np.ndarray) -> list[tuple[str, np.ndarray]]:
        if getattr(self, "channels", "luminance") == "luminance":
            sources = [("", luminance(pixels))]
        else:
            sources = [
                (f"c{i}_", pixels[:, i].astype(np.float64)) for i in range(pixels.shape[1])
            ]
        if not self.planar or pixels.ndim == 4:
            return sources
        volume = getattr(self, "volume", "middle")
        return [(p + q, plane) for p, vol in sources for q, plane in mid_slices(vol, volume)]

    def _names_for(self, sample_shape: tuple[int, ...]) -> list[str]:
        probe = np.zeros((1, *sample_shape), dtype=np.float32)
        views = self._views(probe)
        return [f"{p}{name}" for p, view in views for name in self._view_names(view.shape[1:])]

    def fit(self, X: Any, y: Any = None) -> ImageFeatureExtractor:
        """Check the parameters and learn the input layout and the output feature names."""
        self._check_common()
        _, groups = group_pixels(X)
        shape = groups[0].pixels.shape[1:]
        self.n_channels_ = int(shape[0])
        self.feature_names_ = np.asarray(self._names_for(shape), dtype=object)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Features of every sample, ``(N, n_features)`` float64, rows in input order."""
        check_is_fitted(self, "feature_names_")
        n, groups = group_pixels(X)
        out = np.empty((n, len(self.feature_names_)), dtype=np.float64)
        for g in groups:
            shape = g.pixels.shape[1:]
            if self.channels == "per_channel" and shape[0] != self.n_channels_:
                raise InvalidDataset(
                    f"{g.sources[0]}: has {shape[0]} channels but {type(self).__name__} was "
                    f"fitted per channel on {self.n_channels_}"
                )
            if len(self._names_for(shape)) != out.shape[1]:
                raise InvalidDataset(
                    f"{g.sources[0]}: shape {shape} gives {len(self._names_for(shape))} "
                    f"{type(self).__name__} features, but it was fitted to give {out.shape[1]}; "
                    "resize images to one size first"
                )
            for start in range(0, len(g.index), CHUNK):
                chunk = g.pixels[start : start + CHUNK]
                bad = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
                if bad.any():
                    raise InvalidDataset(
                        f"{g.sources[start + int(np.argmax(bad))]}: pixels contain NaN or "
                        "infinity; clean or preprocess the image before extracting features"
                    )
                feats = [self._extract(view) for _, view in self._views(chunk)]
                out[g.index[start : start + CHUNK]] = np.concatenate(feats, axis=1)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, e.g. ``hog_0`` or ``c1_lbp_p8_r1_3``."""
        check_is_fitted(self, "feature_names_")
        return self.feature_names_.copy()


def minmax_quantise(
    planes: np.ndarray, levels: int, value_range: Sequence[float] | None
) -> np.ndarray:
    """Integer grey levels ``0..levels-1`` of ``(n, h, w)`` planes.

    With ``value_range=None`` each plane is scaled by its own min and max (a constant plane maps to
    level 0); otherwise by the fixed ``(low, high)`` range, values outside being clipped.
    """
    flat = planes.reshape(len(planes), -1)
    if value_range is None:
        lo = flat.min(axis=1)
        hi = flat.max(axis=1)
    else:
        lo = np.full(len(planes), float(value_range[0]))
        hi = np.full(len(planes), float(value_range[1]))
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (flat - lo[:, None]) / span[:, None]
    q = np.clip(np.floor(scaled * levels), 0, levels - 1)
    dtype = np.uint8 if levels <= 256 else np.uint16
    return q.astype(dtype).reshape(planes.shape)
