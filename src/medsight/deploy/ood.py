"""Out-of-distribution checks: warnings (never silence) when an input does not look like the images
a bundle's model was trained on -- modality, colour, channels, dimensions, size, intensities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from medsight.io.image import Image

#: modalities that say nothing about the acquisition (no warning when they differ)
_UNSPECIFIC = {None, "", "unknown", "OT"}
SIZE_FACTOR = 2.0  # a side more than this factor outside the training range is "far"
MARGIN = 0.5  # intensity checks allow this fraction of the training spread beyond its range
COLOUR_TOLERANCE = 2.0  # mean |channel difference| (in % of the range) below which RGB is grey
SAMPLE = 4096  # pixels the intensity percentiles are taken from


def ood_warnings(image: Image, tensor: np.ndarray, spec: Mapping[str, Any]) -> list[str]:
    """Warnings for `image` (as read) and its preprocessed `tensor` against a manifest's
    ``input`` section (modality, raw channels/shapes, intensity statistics)."""
    raw = spec.get("raw") or {}
    intensity = spec.get("intensity") or {}
    out = _modality(image, spec)
    out += _channels(image, raw.get("channels") or [])
    out += _size(image, raw)
    out += _intensity(image.pixels, intensity.get("raw"), "raw pixel values")
    out += _intensity(tensor, intensity.get("preprocessed"), "preprocessed values")
    return out


def is_colour(pixels: np.ndarray) -> bool:
    """True for a 3/4-channel image whose colour channels really differ (not grey stored as RGB)."""
    if pixels.shape[0] not in (3, 4):
        return False
    rgb = np.asarray(pixels[:3], dtype=np.float64)
    span = float(rgb.max() - rgb.min()) or 1.0
    diff = (np.abs(rgb[0] - rgb[1]).mean() + np.abs(rgb[1] - rgb[2]).mean()) / 2
    return 100.0 * diff / span > COLOUR_TOLERANCE


def _modality(image: Image, spec: Mapping[str, Any]) -> list[str]:
    trained = spec.get("modality")
    seen = set(spec.get("modalities_seen") or {}) | {trained}
    got = image.modality
    if got in _UNSPECIFIC or trained in _UNSPECIFIC or got in seen:
        return []
    return [f"modality {got} differs from the training images' {trained}: the model was not "
            f"validated on {got} images"]


def _channels(image: Image, trained: list[int]) -> list[str]:
    if not trained or image.channels in trained:
        if trained == [3] and image.channels == 3 and not is_colour(image.pixels):
            return ["a grey-scale image stored as colour was sent to a model trained on colour "
                    "images"]
        return []
    if set(trained) == {1} and is_colour(image.pixels):
        return [f"a colour image ({image.channels} channels, e.g. a photograph) was sent to a "
                "model trained on grey-scale images; it was converted to grey"]
    return [f"the image has {image.channels} channel(s), the training images had "
            f"{'/'.join(map(str, trained))}"]


def _size(image: Image, raw: Mapping[str, Any]) -> list[str]:
    lo, hi = raw.get("shape_min"), raw.get("shape_max")
    shape = image.spatial_shape
    if not lo or not hi:
        return []
    if len(lo) != len(shape):
        kind = {2: "2D images", 3: "3D volumes"}
        return [f"the input is a {kind.get(len(shape), f'{len(shape)}-D array')} but the model was "
                f"trained on {kind.get(len(lo), f'{len(lo)}-D arrays')}"]
    far = any(s < a / SIZE_FACTOR or s > b * SIZE_FACTOR for s, a, b in zip(shape, lo, hi, strict=True))
    if not far:
        return []
    return [f"image size {'x'.join(map(str, shape))} is far from the training sizes "
            f"({'x'.join(map(str, lo))} to {'x'.join(map(str, hi))})"]


def _intensity(pixels: np.ndarray, stats: Mapping[str, Any] | None, what: str) -> list[str]:
    if not stats:
        return []
    x = np.asarray(pixels).ravel()
    if not np.isfinite(x).all():
        x = x[np.isfinite(x)]
    if not x.size:
        return [f"{what}: no finite pixel values"]
    out = []
    lo, hi = float(stats["min"]), float(stats["max"])
    spread = max(hi - lo, 1e-12)
    # statistics of an even sample, as the training statistics were (full passes over a large
    # input cost a good part of a small model's forward)
    sample = x[::max(1, x.size // SAMPLE)]
    k01, k99 = int(0.01 * (sample.size - 1)), int(np.ceil(0.99 * (sample.size - 1)))
    part = np.partition(sample, [k01, k99])
    p01, p99 = float(part[k01]), float(part[k99])
    if p01 < lo - MARGIN * spread or p99 > hi + MARGIN * spread:
        out.append(f"{what} {p01:.4g}..{p99:.4g} (1st-99th percentile) lie outside the training "
                   f"range {lo:.4g}..{hi:.4g}")
    mean, std = _mean_std(sample.astype(np.float64))
    for key, value, name in (("image_mean", mean, "mean"), ("image_std", std, "spread")):
        rng = stats.get(key)
        if not rng:
            continue
        a, b = float(rng["min"]), float(rng["max"])
        margin = MARGIN * max(b - a, 0.05 * spread)
        if value < a - margin or value > b + margin:
            out.append(f"{what}: the image's {name} {value:.4g} is outside the training images' "
                       f"{a:.4g}..{b:.4g}")
    return out


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    """``x.mean()`` and ``x.std()`` (the same sums, so the same values) with one pass for the mean
    instead of two: per image, these two reductions were most of an intensity check."""
    mean = x.sum() / x.size
    centred = x - mean
    return float(mean), float(np.sqrt((centred * centred).sum() / x.size))
