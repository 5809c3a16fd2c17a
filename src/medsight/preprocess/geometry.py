"""Geometry steps: resize (optionally keeping the aspect ratio and padding), pad to a size and
centre crop. Spacing and origin are updated so physical sizes stay right; 2D and 3D alike. Each
move of the pixel grid is recorded as an index map so heatmaps can be mapped back."""

from __future__ import annotations

from typing import Any

import numpy as np

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess.base import (
    Step,
    check_size_param,
    record,
    register_step,
    spatial_size,
)


def _check_pad_value(value: Any, what: str) -> None:
    if value == "min":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidConfig(f"{what}: pad value must be a number or 'min', got {value!r}")


def _pad_value(pixels: np.ndarray, value: float | str) -> float:
    return float(pixels.min()) if value == "min" else float(value)


def centered_pads(shape: tuple[int, ...], size: tuple[int, ...]) -> list[tuple[int, int]]:
    """(before, after) padding per axis to grow `shape` to at least `size`, centred."""
    pads = []
    for s, t in zip(shape, size, strict=True):
        extra = max(t - s, 0)
        pads.append((extra // 2, extra - extra // 2))
    return pads


def record_transform(
    out: Image, kind: str, in_shape: tuple[int, ...], scale: tuple[float, ...],
    offset: tuple[float, ...],
) -> Image:
    """Append to ``out.metadata["geometry"]`` how `out`'s pixel grid maps onto its input's:
    ``input index = scale * output index + offset`` per spatial axis (pixel centres at integer
    indices). The chain of these maps is what `medsight.explain` inverts. Returns `out`."""
    entry = {
        "kind": kind,
        "in_shape": [int(s) for s in in_shape],
        "out_shape": list(out.spatial_shape),
        "scale": [float(v) for v in scale],
        "offset": [float(v) for v in offset],
    }
    out.metadata = dict(out.metadata)
    out.metadata["geometry"] = [*out.metadata.get("geometry", []), entry]
    return out


def pad_image(image: Image, pads: list[tuple[int, int]], value: float) -> Image:
    """Pad the spatial axes by `pads` with a constant; the origin moves to the new first voxel."""
    if not any(a or b for a, b in pads):
        return image.with_pixels(image.pixels.copy())
    out = np.pad(image.pixels, [(0, 0), *pads], mode="constant", constant_values=value)
    res = image.with_pixels(out)
    res.origin = image.shifted_origin(tuple(-a for a, _ in pads))
    n = len(pads)
    return record_transform(res, "pad", image.spatial_shape, (1.0,) * n,
                            tuple(-float(a) for a, _ in pads))


def crop_image(image: Image, start: tuple[int, ...], stop: tuple[int, ...]) -> Image:
    """Crop the spatial axes to ``[start, stop)``; the origin moves to the new first voxel."""
    sl = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    res = image.with_pixels(image.pixels[(slice(None), *sl)].copy())
    res.origin = image.shifted_origin(tuple(float(a) for a in start))
    return record_transform(res, "crop", image.spatial_shape, (1.0,) * len(start),
                            tuple(float(a) for a in start))


def resize_pixels(
    pixels: np.ndarray, shape: tuple[int, ...], order: int, anti_aliasing: bool
) -> np.ndarray:
    """Resample the spatial axes of a channels-first array to `shape`, as skimage ``resize``
    (edge mode, range preserved) does. Linear interpolation (order 1, the default) runs in numpy
    (`_resize_linear`); other orders import scikit-image on first use."""
    if tuple(pixels.shape[1:]) == tuple(shape):
        return pixels.copy()
    x = pixels.astype(np.float64)
    smooth = bool(anti_aliasing) and order > 0
    if order == 1:
        return _resize_linear(x, tuple(shape), smooth).astype(np.float32)
    from skimage.transform import resize as sk_resize

    out = sk_resize(x, (pixels.shape[0], *shape), order=order, mode="edge", preserve_range=True,
                    anti_aliasing=smooth)
    return out.astype(np.float32)


def _resize_linear(x: np.ndarray, shape: tuple[int, ...], smooth: bool) -> np.ndarray:
    """skimage ``resize(order=1, mode="edge")`` axis by axis: a Gaussian of sigma (factor - 1) / 2
    on each shrunk axis when `smooth`, then linear interpolation at pixel centres
    (``(i + 0.5) * in / out - 0.5``, clamped to the edge); clipped to the input's range."""
    lo, hi = float(x.min()), float(x.max())
    for axis, n_out in enumerate(shape, start=1):
        n_in = x.shape[axis]
        if smooth and n_in > n_out:
            x = _gaussian_axis(x, axis, (n_in / n_out - 1) / 2)
        if n_in != n_out:
            x = _linear_axis(x, axis, n_in, n_out)
    return np.clip(x, lo, hi)


def _gaussian_axis(x: np.ndarray, axis: int, sigma: float) -> np.ndarray:
    """scipy ``gaussian_filter1d`` (truncate 4, mode "nearest") along `axis`."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1) ** 2)
    taps /= taps.sum()
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(x, pad, mode="edge")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for j, w in enumerate(taps):
        out += w * np.take(padded, np.arange(j, j + n), axis=axis)
    return out


def _linear_axis(x: np.ndarray, axis: int, n_in: int, n_out: int) -> np.ndarray:
    coords = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(coords).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (coords - i0).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


@register_step("resize")
class Resize(Step):
    """Resample to ``size`` (one int per spatial axis, or one int for all).

    With ``keep_aspect`` the image is scaled so its longest side (relative to the target) fits,
    then padded, centred, to ``size`` with ``pad_value`` (a number or ``"min"``, the image
    minimum). ``order`` is the spline order (0 nearest, 1 linear, 3 cubic); ``anti_aliasing``
    smooths before shrinking. Spacing grows or shrinks so the physical extent is kept.
    """

    def __init__(
        self,
        size: int | tuple[int, ...],
        keep_aspect: bool = False,
        pad_value: float | str = 0,
        order: int = 1,
        anti_aliasing: bool = True,
    ) -> None:
        self.size = size
        self.keep_aspect = keep_aspect
        self.pad_value = pad_value
        self.order = order
        self.anti_aliasing = anti_aliasing
        check_size_param(size, "resize")
        _check_pad_value(pad_value, "resize")
        if isinstance(order, bool) or order not in range(6):
            raise InvalidConfig(f"resize: order must be an int 0..5, got {order!r}")

    def apply(self, image: Image) -> Image:
        shape = image.spatial_shape
        target = spatial_size(self.size, len(shape), "resize")
        if self.keep_aspect:
            scale = min(t / s for s, t in zip(shape, target, strict=True))
            inner = tuple(
                min(t, max(1, round(s * scale))) for s, t in zip(shape, target, strict=True)
            )
        else:
            inner = target
        pixels = resize_pixels(image.pixels, inner, self.order, self.anti_aliasing)
        spacing = tuple(
            sp * s / n for sp, s, n in zip(image.spacing, shape, inner, strict=True)
        )
        resized = image.with_pixels(pixels, spacing=spacing)
        # the centre of the first voxel moves by half the change of voxel size
        half = tuple((n - o) / 2.0 / o for n, o in zip(spacing, image.spacing, strict=True))
        resized.origin = image.shifted_origin(half)
        if inner != shape:
            # skimage's resize maps output centre i to input (i + 0.5) * s / n - 0.5
            scale = tuple(s / n for s, n in zip(shape, inner, strict=True))
            record_transform(resized, "resize", shape, scale, tuple((f - 1) / 2 for f in scale))
        pads = centered_pads(inner, target)
        if any(a or b for a, b in pads):
            resized = pad_image(resized, pads, _pad_value(image.pixels, self.pad_value))
        return record(
            resized, self.name, from_shape=shape, to_shape=target, resized_shape=inner,
            pad=pads, spacing=spacing,
        )


@register_step("pad_to")
class PadTo(Step):
    """Pad each spatial axis, centred, up to ``size`` with ``value`` (a number or ``"min"``).

    Axes already at least as long as the target are left as they are (no cropping).
    """

    def __init__(self, size: int | tuple[int, ...], value: float | str = 0) -> None:
        self.size = size
        self.value = value
        check_size_param(size, "pad_to")
        _check_pad_value(value, "pad_to")

    def apply(self, image: Image) -> Image:
        target = spatial_size(self.size, len(image.spatial_shape), "pad_to")
        pads = centered_pads(image.spatial_shape, target)
        out = pad_image(image, pads, _pad_value(image.pixels, self.value))
        return record(out, self.name, pad=pads)


@register_step("center_crop")
class CenterCrop(Step):
    """Crop each spatial axis, centred, down to ``size``; shorter axes are left as they are."""

    def __init__(self, size: int | tuple[int, ...]) -> None:
        self.size = size
        check_size_param(size, "center_crop")

    def apply(self, image: Image) -> Image:
        shape = image.spatial_shape
        target = spatial_size(self.size, len(shape), "center_crop")
        start = tuple(max(s - t, 0) // 2 for s, t in zip(shape, target, strict=True))
        stop = tuple(a + min(s, t) for a, s, t in zip(start, shape, target, strict=True))
        out = crop_image(image, start, stop)
        return record(out, self.name, start=start, stop=stop)
