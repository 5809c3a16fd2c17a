"""Texture descriptors: local binary pattern histograms and grey-level co-occurrence statistics.

Both work on 2D images (or mid-slices of volumes, see ``features.base``) quantised to integer
grey levels by a min-max scaling *per image* (per plane): ``level = floor((x - min) / (max - min)
* levels)``, clipped to ``levels - 1``; a constant image is all level 0. GLCM accepts a fixed
``value_range=(low, high)`` instead, for data whose absolute intensity matters (e.g. CT in HU).
LBP is computed on 256 levels (LBP codes only compare neighbours, so the scaling loses nothing
but sub-level differences).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from medsight.errors import InvalidConfig
from medsight.features.base import ImageFeatureExtractor, minmax_quantise
from medsight.features.registry import register_feature

LBP_METHODS = ("uniform", "nri_uniform", "default", "ror")
GLCM_PROPS = (
    "contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM",
    "mean", "variance", "std", "entropy",
)
DEFAULT_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
GLCM_BYTES = 32_000_000  # co-occurrence matrices held at once


@register_feature("lbp")
class LBP(ImageFeatureExtractor):
    """Normalised histogram of local binary pattern codes (skimage ``local_binary_pattern``).

    ``n_points`` neighbours on a circle of ``radius`` pixels; ``method`` ``"uniform"`` (rotation
    invariant, ``n_points + 2`` bins), ``"nri_uniform"`` (``n_points * (n_points - 1) + 3``),
    ``"default"`` or ``"ror"`` (``2 ** n_points``). Each histogram sums to 1.
    Names: ``lbp_p{P}_r{R}_{bin}``.
    """

    planar = True

    def __init__(
        self,
        n_points: int = 8,
        radius: float = 1.0,
        method: str = "uniform",
        channels: str = "luminance",
        volume: str = "middle",
    ):
        self.n_points = n_points
        self.radius = radius
        self.method = method
        self.channels = channels
        self.volume = volume

    def _check_params(self) -> None:
        if self.method not in LBP_METHODS:
            raise InvalidConfig(f"LBP: method must be one of {LBP_METHODS}, got {self.method!r}")
        if not 1 <= int(self.n_points) <= (16 if self.method in ("default", "ror") else 32):
            raise InvalidConfig(f"LBP: n_points={self.n_points} is out of range for {self.method}")
        if float(self.radius) <= 0:
            raise InvalidConfig(f"LBP: radius must be positive, got {self.radius}")

    def _n_bins(self) -> int:
        p = int(self.n_points)
        return {"uniform": p + 2, "nri_uniform": p * (p - 1) + 3}.get(self.method, 2**p)

    def _view_names(self, shape: tuple[int, ...]) -> list[str]:
        stem = f"lbp_p{int(self.n_points)}_r{float(self.radius):g}"
        return [f"{stem}_{k}" for k in range(self._n_bins())]

    def _extract(self, views: np.ndarray) -> np.ndarray:
        grey = minmax_quantise(views, 256, None)
        p, r = int(self.n_points), float(self.radius)
        codes = np.stack([local_binary_pattern(g, p, r, self.method) for g in grey])
        codes = codes.reshape(len(views), -1).astype(np.int64)
        n, bins = len(views), self._n_bins()
        counts = np.bincount((codes + bins * np.arange(n)[:, None]).ravel(), minlength=n * bins)
        return counts.reshape(n, bins) / codes.shape[1]


@register_feature("glcm")
class GLCM(ImageFeatureExtractor):
    """Grey-level co-occurrence properties (``skimage.feature.graycomatrix``/``graycoprops``).

    The image is quantised to ``levels`` grey levels (module doc); a symmetric, normalised GLCM is
    built for every distance (pixels) and angle (degrees) and each property in ``props`` read from
    it. Names: ``glcm_{prop}_d{distance}_a{angle}``, or ``glcm_{prop}_d{distance}_mean`` with
    ``average_angles=True`` (rotation-invariant mean over the angles).
    """

    planar = True

    def __init__(
        self,
        distances: Sequence[int] = (1,),
        angles: Sequence[float] = (0, 45, 90, 135),
        levels: int = 32,
        props: Sequence[str] = DEFAULT_GLCM_PROPS,
        value_range: tuple[float, float] | None = None,
        average_angles: bool = False,
        channels: str = "luminance",
        volume: str = "middle",
    ):
        self.distances = distances
        self.angles = angles
        self.levels = levels
        self.props = props
        self.value_range = value_range
        self.average_angles = average_angles
        self.channels = channels
        self.volume = volume

    def _check_params(self) -> None:
        if not 2 <= int(self.levels) <= 65536:
            raise InvalidConfig(f"GLCM: levels must be in 2..65536, got {self.levels}")
        if len(self.distances) == 0 or min(int(d) for d in self.distances) < 1:
            raise InvalidConfig(f"GLCM: distances must be positive ints, got {self.distances}")
        if len(self.angles) == 0:
            raise InvalidConfig("GLCM: give at least one angle (degrees)")
        unknown = [p for p in self.props if p not in GLCM_PROPS]
        if unknown or len(self.props) == 0:
            raise InvalidConfig(f"GLCM: unknown props {unknown}; choose from {GLCM_PROPS}")
        if self.value_range is not None:
            lo, hi = (float(v) for v in self.value_range)
            if not hi > lo:
                raise InvalidConfig(f"GLCM: value_range must be (low, high) with high > low, "
                                    f"got {self.value_range}")

    def _view_names(self, shape: tuple[int, ...]) -> list[str]:
        suffixes = ["mean"] if self.average_angles else [f"a{float(a):g}" for a in self.angles]
        return [
            f"glcm_{p}_d{int(d)}_{s}" for p in self.props for d in self.distances for s in suffixes
        ]

    def _extract(self, views: np.ndarray) -> np.ndarray:
        levels = int(self.levels)
        grey = minmax_quantise(views, levels, self.value_range)
        dists = [int(d) for d in self.distances]
        angles = np.deg2rad(np.asarray(self.angles, dtype=float))
        n_d, n_a = len(dists), len(angles)
        per_image = levels * levels * n_d * n_a * 8
        step = max(1, GLCM_BYTES // per_image)
        out = []
        for start in range(0, len(grey), step):
            block = grey[start : start + step]
            # Stack the images' matrices along the angle axis so graycoprops runs once per block.
            mats = np.concatenate(
                [graycomatrix(g, dists, angles, levels=levels, symmetric=True, normed=True)
                 for g in block],
                axis=3,
            )
            props = []
            for p in self.props:
                vals = graycoprops(mats, p).reshape(n_d, len(block), n_a).transpose(1, 0, 2)
                props.append(vals.mean(axis=2, keepdims=True) if self.average_angles else vals)
            out.append(np.stack(props, axis=1).reshape(len(block), -1))
        return np.concatenate(out, axis=0)
