"""Edge/threshold-based foreground crop: find the anatomy and cut away borders, burned-in text
and noise specks, reporting the box kept and how much was removed on each side."""

from __future__ import annotations

import numpy as np

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess.base import Step, gray, record, register_step
from medsight.preprocess.geometry import crop_image

METHODS = ("otsu", "canny")
POLARITIES = ("auto", "bright", "dark")


def _unit(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(x)


def _border_values(x: np.ndarray) -> np.ndarray:
    parts = []
    for ax in range(x.ndim):
        parts.append(np.take(x, [0, x.shape[ax] - 1], axis=ax).ravel())
    return np.concatenate(parts)


def foreground_mask(
    image_gray: np.ndarray,
    method: str = "otsu",
    polarity: str = "auto",
    closing_radius: int = 3,
    sigma: float = 2.0,
) -> np.ndarray:
    """Binary mask of candidate foreground (2D or 3D), holes filled.

    ``otsu`` thresholds the intensities; the foreground is the side of the threshold the image
    border is *not* on (``polarity="auto"``), or the bright/dark side when forced. ``canny``
    finds edges (slice by slice for volumes, Gaussian `sigma`). Both then close gaps with a disk
    (ball) of `closing_radius` pixels and fill holes; for ``canny`` the radius is at least 2% of
    the shortest side, so an outline broken where the anatomy meets the image border is still
    joined with the edges inside it into one region.
    """
    from scipy import ndimage
    from skimage.feature import canny
    from skimage.filters import threshold_otsu
    from skimage.morphology import ball, disk

    x = _unit(image_gray)
    if float(x.max()) == 0.0:
        return np.zeros(x.shape, dtype=bool)
    if method == "otsu":
        t = threshold_otsu(x)
        bright = x > t
        if polarity == "bright":
            mask = bright
        elif polarity == "dark":
            mask = ~bright
        else:
            # the background is whatever most of the image border is
            mask = ~bright if np.mean(_border_values(x) > t) > 0.5 else bright
    else:
        if x.ndim == 2:
            mask = canny(x, sigma=sigma)
        else:
            mask = np.stack([canny(s, sigma=sigma) for s in x])
        closing_radius = max(closing_radius, round(0.02 * min(x.shape)))
    if closing_radius > 0:
        fp = disk(closing_radius) if x.ndim == 2 else ball(closing_radius)
        # pad so closing does not erode regions that touch the border
        r = closing_radius
        padded = np.pad(mask, r, mode="constant")
        mask = ndimage.binary_closing(padded, structure=fp)[tuple(slice(r, -r) for _ in x.shape)]
    return ndimage.binary_fill_holes(mask)


def main_component(mask: np.ndarray, component_ratio: float) -> np.ndarray:
    """The largest connected component plus any other at least `component_ratio` of its size."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= component_ratio * sizes.max()) + 1
    return np.isin(labels, keep)


@register_step("crop_foreground")
class CropForeground(Step):
    """Crop to the anatomy found by Otsu thresholding or Canny edges (2D and 3D).

    The foreground mask (see `foreground_mask`) is reduced to its largest connected component
    (plus components at least ``component_ratio`` of its size, e.g. two lungs or two sections),
    which drops burned-in text and noise specks; its bounding box, grown by ``margin`` pixels, is
    kept. When nothing of at least ``min_area_fraction`` of the image is found the image is
    kept unchanged and the metadata record says so. The record gives the box (``start``/``stop`` per
    spatial axis, plus ``box_xyxy`` for 2D) and the fraction removed on each side.
    """

    def __init__(
        self,
        method: str = "otsu",
        margin: int = 2,
        min_area_fraction: float = 0.01,
        component_ratio: float = 0.2,
        polarity: str = "auto",
        closing_radius: int = 3,
        sigma: float = 2.0,
    ) -> None:
        self.method = method
        self.margin = margin
        self.min_area_fraction = min_area_fraction
        self.component_ratio = component_ratio
        self.polarity = polarity
        self.closing_radius = closing_radius
        self.sigma = sigma
        if method not in METHODS:
            raise InvalidConfig(f"crop_foreground: method must be one of {METHODS}, got {method!r}")
        if polarity not in POLARITIES:
            raise InvalidConfig(
                f"crop_foreground: polarity must be one of {POLARITIES}, got {polarity!r}"
            )
        for what, v in (("margin", margin), ("closing_radius", closing_radius)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidConfig(f"crop_foreground: {what} must be an int >= 0, got {v!r}")
        for what, v in (("min_area_fraction", min_area_fraction),
                        ("component_ratio", component_ratio)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise InvalidConfig(f"crop_foreground: {what} must be in [0, 1], got {v!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0:
            raise InvalidConfig(f"crop_foreground: sigma must be > 0, got {sigma!r}")

    def find_box(self, image: Image) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(start, stop) of the foreground box per spatial axis, or None when none is found."""
        g = gray(image.pixels)
        mask = foreground_mask(g, self.method, self.polarity, self.closing_radius, self.sigma)
        mask = main_component(mask, self.component_ratio)
        area = int(mask.sum())
        if area == 0 or area < self.min_area_fraction * mask.size:
            return None
        coords = np.nonzero(mask)
        start = tuple(max(int(c.min()) - self.margin, 0) for c in coords)
        stop = tuple(
            min(int(c.max()) + 1 + self.margin, s) for c, s in zip(coords, mask.shape, strict=True)
        )
        return start, stop

    def apply(self, image: Image) -> Image:
        shape = image.spatial_shape
        box = self.find_box(image)
        if box is None:
            out = image.with_pixels(image.pixels.copy())
            return record(
                out, self.name, found=False, method=self.method,
                reason=f"no foreground of at least {self.min_area_fraction:.1%} of the image",
            )
        start, stop = box
        out = crop_image(image, start, stop)
        sides = (("first_slices", "last_slices"), ("top", "bottom"), ("left", "right"))
        removed = {}
        for (low, high), a, b, s in zip(sides[-len(shape):], start, stop, shape, strict=True):
            removed[low] = a / s
            removed[high] = (s - b) / s
        kept = float(np.prod([b - a for a, b in zip(start, stop, strict=True)]) / np.prod(shape))
        details = {"found": True, "method": self.method, "start": start, "stop": stop,
                   "removed_fraction": removed, "kept_fraction": kept}
        if len(shape) == 2:
            details["box_xyxy"] = [start[1], start[0], stop[1], stop[0]]
        return record(out, self.name, **details)

