"""Intensity steps: CT windows (named presets, DICOM header), percentile clip, z-score, min-max,
CLAHE. They work on 2D ``(C,H,W)`` images and 3D ``(C,D,H,W)`` volumes alike."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess.base import Step, record, register_step

log = logging.getLogger(__name__)

#: CT windows as (level, width) in Hounsfield units. These are the usual radiology reading
#: windows (e.g. Radiopaedia "Windowing (CT)"): lung L-600/W1500, mediastinum L50/W350,
#: bone L400/W1800, brain L40/W80, soft tissue L50/W400, liver L60/W160.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "soft_tissue": (50.0, 400.0),
    "liver": (60.0, 160.0),
}


def apply_window(pixels: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map ``[level - width/2, level + width/2]`` linearly onto [0, 1] and clip (float32).

    The level maps to exactly 0.5. This is the plain linear window used for float data, not the
    DICOM integer formula with its half-pixel offsets.
    """
    low = float(level) - float(width) / 2.0
    out = (pixels.astype(np.float64) - low) / float(width)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _check_number(value: Any, what: str, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidConfig(f"{what} must be a number, got {value!r}")
    if not np.isfinite(value) or (positive and value <= 0):
        raise InvalidConfig(f"{what} must be a finite{' positive' if positive else ''} number, "
                            f"got {value!r}")


@register_step("window")
class Window(Step):
    """Apply an intensity window (level/width or a named CT preset) and scale it to [0, 1].

    Give either ``preset`` (one of `WINDOW_PRESETS`) or both ``level`` and ``width`` (in the
    image's units, Hounsfield for CT). Values below the window become 0, above it 1.
    """

    def __init__(
        self, level: float | None = None, width: float | None = None, preset: str | None = None
    ) -> None:
        self.level = level
        self.width = width
        self.preset = preset
        if preset is not None:
            if level is not None or width is not None:
                raise InvalidConfig("window: give either a preset or level and width, not both")
            if preset not in WINDOW_PRESETS:
                raise InvalidConfig(
                    f"window: unknown preset {preset!r}; presets: {', '.join(WINDOW_PRESETS)}"
                )
        else:
            if level is None or width is None:
                raise InvalidConfig("window: needs a preset or both level and width")
            _check_number(level, "window level")
            _check_number(width, "window width", positive=True)

    def window(self) -> tuple[float, float]:
        """The (level, width) this step applies."""
        if self.preset is not None:
            return WINDOW_PRESETS[self.preset]
        return float(self.level), float(self.width)  # type: ignore[arg-type]

    def apply(self, image: Image) -> Image:
        level, width = self.window()
        out = image.with_pixels(apply_window(image.pixels, level, width))
        return record(out, self.name, level=level, width=width, preset=self.preset)


def _first_number(value: Any, index: int) -> float | None:
    """A window value from metadata: a number, or element `index` of a multi-valued one."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) or (
        isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    ):  # includes pydicom's MultiValue
        if len(value) == 0:
            return None
        value = value[min(index, len(value) - 1)]
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


@register_step("dicom_window")
class DicomWindow(Step):
    """Apply the window stored in the DICOM header (``window_center``/``window_width`` metadata).

    Multi-valued headers use value number ``index``. Without a usable header window, fall back to
    ``default`` (level, width) when given, else to the ``percentiles`` range of the image, with a
    logged warning; the metadata record says which source was used.
    """

    def __init__(
        self,
        default: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = (0.5, 99.5),
        index: int = 0,
    ) -> None:
        self.default = default
        self.percentiles = percentiles
        self.index = index
        if default is not None:
            if len(default) != 2:
                raise InvalidConfig(
                    f"dicom_window: default must be [level, width], got {default!r}"
                )
            _check_number(default[0], "dicom_window default level")
            _check_number(default[1], "dicom_window default width", positive=True)
        _check_percentiles(percentiles, "dicom_window")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidConfig(f"dicom_window: index must be a non-negative int, got {index!r}")

    def apply(self, image: Image) -> Image:
        level = _first_number(image.metadata.get("window_center"), self.index)
        width = _first_number(image.metadata.get("window_width"), self.index)
        source = "header"
        if level is None or width is None or width <= 0:
            if self.default is not None:
                level, width = float(self.default[0]), float(self.default[1])
                source = "default"
            else:
                lo, hi = np.percentile(image.pixels, [self.percentiles[0], self.percentiles[1]])
                width = max(float(hi - lo), 1e-6)
                level = float(lo) + width / 2.0
                source = "percentile"
            log.warning(
                "%s has no usable DICOM window; using the %s window level=%g width=%g",
                image.source, source, level, width,
            )
        out = image.with_pixels(apply_window(image.pixels, level, width))
        return record(out, self.name, level=level, width=width, source=source)


def _check_percentiles(p: Any, what: str) -> None:
    try:
        lo, hi = (float(v) for v in p)
    except (TypeError, ValueError):
        raise InvalidConfig(f"{what}: percentiles must be [lo, hi], got {p!r}") from None
    if not 0.0 <= lo < hi <= 100.0:
        raise InvalidConfig(f"{what}: need 0 <= lo < hi <= 100, got lo={lo}, hi={hi}")


@register_step("clip_percentile")
class ClipPercentile(Step):
    """Clip intensities to the [lo, hi] percentiles of the image (per channel when asked).

    Removes outliers such as metal streaks or hot pixels without rescaling; follow it with
    `minmax` or `zscore` to normalise.
    """

    def __init__(self, lo: float = 0.5, hi: float = 99.5, per_channel: bool = False) -> None:
        self.lo = lo
        self.hi = hi
        self.per_channel = per_channel
        _check_percentiles((lo, hi), "clip_percentile")

    def apply(self, image: Image) -> Image:
        px = image.pixels
        if self.per_channel:
            bounds = [np.percentile(c, [self.lo, self.hi]) for c in px]
            out = np.stack([np.clip(c, b[0], b[1]) for c, b in zip(px, bounds, strict=True)])
        else:
            b = np.percentile(px, [self.lo, self.hi])
            bounds = [b]
            out = np.clip(px, b[0], b[1])
        res = image.with_pixels(out.astype(np.float32))
        return record(res, self.name, bounds=[[float(b[0]), float(b[1])] for b in bounds])


@register_step("zscore")
class ZScore(Step):
    """Subtract the mean and divide by the standard deviation (per channel by default).

    ``mask_nonzero`` computes the statistics on non-zero pixels only and leaves zero pixels at 0
    (useful for skull-stripped MR). A constant image (std 0) is only centred, never divided by 0.
    """

    def __init__(self, per_channel: bool = True, mask_nonzero: bool = False) -> None:
        self.per_channel = per_channel
        self.mask_nonzero = mask_nonzero

    def _normalise(self, x: np.ndarray) -> tuple[np.ndarray, float, float]:
        x = x.astype(np.float64)
        mask = x != 0 if self.mask_nonzero else np.ones(x.shape, dtype=bool)
        if not mask.any():
            return x, 0.0, 1.0
        vals = x[mask]
        mean = float(vals.mean())
        std = float(vals.std())
        if std < 1e-8:
            std = 1.0
        out = x.copy()
        out[mask] = (vals - mean) / std
        return out, mean, std

    def apply(self, image: Image) -> Image:
        px = image.pixels
        if self.per_channel:
            parts = [self._normalise(c) for c in px]
            out = np.stack([p[0] for p in parts])
            stats = [[p[1], p[2]] for p in parts]
        else:
            out, mean, std = self._normalise(px)
            stats = [[mean, std]]
        res = image.with_pixels(out.astype(np.float32))
        return record(res, self.name, mean_std=stats)


@register_step("minmax")
class MinMax(Step):
    """Rescale intensities linearly so the minimum maps to ``out[0]`` and the maximum to ``out[1]``.

    Statistics are global unless ``per_channel``; a constant image becomes ``out[0]`` everywhere.
    """

    def __init__(self, out: tuple[float, float] = (0.0, 1.0), per_channel: bool = False) -> None:
        self.out = out
        self.per_channel = per_channel
        try:
            a, b = (float(v) for v in out)
        except (TypeError, ValueError):
            raise InvalidConfig(f"minmax: out must be [low, high], got {out!r}") from None
        if not a < b:
            raise InvalidConfig(f"minmax: out must be increasing, got {out!r}")

    def _scale(self, x: np.ndarray) -> np.ndarray:
        a, b = (float(v) for v in self.out)
        x = x.astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        if hi - lo < 1e-12:
            return np.full(x.shape, a)
        return a + (x - lo) * (b - a) / (hi - lo)

    def apply(self, image: Image) -> Image:
        px = image.pixels
        out = np.stack([self._scale(c) for c in px]) if self.per_channel else self._scale(px)
        res = image.with_pixels(out.astype(np.float32))
        return record(res, self.name, input_range=[float(px.min()), float(px.max())])


@register_step("clahe")
class Clahe(Step):
    """Contrast-limited adaptive histogram equalisation (skimage ``equalize_adapthist``).

    skimage needs input in [0, 1], so each channel is first min-max rescaled to [0, 1]; the output
    is in [0, 1]. ``kernel_size`` (int or one per spatial axis; None = 1/8 of each side) sets the
    tile size, ``clip_limit`` in (0, 1] the contrast limit. Works on 2D and 3D.
    """

    def __init__(
        self, clip_limit: float = 0.01, kernel_size: int | tuple[int, ...] | None = None,
        nbins: int = 256,
    ) -> None:
        self.clip_limit = clip_limit
        self.kernel_size = kernel_size
        self.nbins = nbins
        _check_number(clip_limit, "clahe clip_limit", positive=True)
        if clip_limit > 1:
            raise InvalidConfig(f"clahe: clip_limit must be in (0, 1], got {clip_limit}")
        if isinstance(nbins, bool) or not isinstance(nbins, int) or nbins < 2:
            raise InvalidConfig(f"clahe: nbins must be an int >= 2, got {nbins!r}")
        if kernel_size is not None:
            ks = [kernel_size] if isinstance(kernel_size, int) else list(kernel_size)
            if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in ks):
                raise InvalidConfig(f"clahe: kernel_size must be ints >= 2, got {kernel_size!r}")

    def apply(self, image: Image) -> Image:
        from skimage.exposure import equalize_adapthist

        ks = self.kernel_size
        if ks is not None and not isinstance(ks, int):
            ks = tuple(int(k) for k in ks)
        chans = []
        for c in image.pixels.astype(np.float64):
            lo, hi = float(c.min()), float(c.max())
            if hi - lo < 1e-12:
                chans.append(np.zeros_like(c))
                continue
            unit = (c - lo) / (hi - lo)
            chans.append(equalize_adapthist(
                unit, kernel_size=ks, clip_limit=self.clip_limit, nbins=self.nbins
            ))
        res = image.with_pixels(np.stack(chans).astype(np.float32))
        return record(res, self.name, clip_limit=self.clip_limit, kernel_size=self.kernel_size)
