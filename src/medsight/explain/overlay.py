"""Heatmaps as pictures: the image with the heatmap blended over it, as PNG bytes (a volume shows
the slice where the heatmap is strongest), and the plain image for reports."""

from __future__ import annotations

import io

import numpy as np

from medsight.errors import InvalidConfig


def _display_rgb(pixels: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W, 3) float in [0, 1]: RGB when 3 channels, else the channel mean in grey,
    stretched between the 1st and 99th percentiles."""
    x = np.asarray(pixels, dtype=np.float64)
    x = x if x.shape[0] == 3 else x.mean(axis=0, keepdims=True)
    lo, hi = np.percentile(x, [1, 99])
    if hi - lo < 1e-12:
        lo, hi = float(x.min()), float(x.max()) + 1e-12
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return np.repeat(x, 3, axis=0).transpose(1, 2, 0) if x.shape[0] == 1 else x.transpose(1, 2, 0)


def shown_slice(pixels: np.ndarray, heat: np.ndarray | None = None) -> int | None:
    """For a volume (C, D, H, W): the slice shown, where the heatmap is strongest (the middle one
    without a heatmap); None for a 2D image."""
    if pixels.ndim == 3:
        return None
    if heat is None or not np.any(heat):
        return pixels.shape[1] // 2
    return int(np.argmax(np.asarray(heat).reshape(heat.shape[0], -1).sum(axis=1)))


def png_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 picture as PNG bytes."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _png(rgb: np.ndarray) -> bytes:
    return png_bytes(np.round(rgb * 255).astype(np.uint8))


def image_png(pixels: np.ndarray) -> bytes:
    """The image alone as PNG (a volume: its middle slice)."""
    z = shown_slice(pixels)
    return _png(_display_rgb(pixels if z is None else pixels[:, z]))


def overlay_png(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> bytes:
    """The image (C, *spatial) with `heat` (values in [0, 1] on the same grid) blended over it in
    matplotlib colormap `cmap`; stronger heat is more opaque (at most `alpha`)."""
    from matplotlib import colormaps

    pixels = np.asarray(pixels)
    heat = np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0)
    if heat.shape != pixels.shape[1:]:
        raise InvalidConfig(f"heatmap shape {heat.shape} does not match image {pixels.shape[1:]}")
    z = shown_slice(pixels, heat)
    if z is not None:
        pixels, heat = pixels[:, z], heat[z]
    base = _display_rgb(pixels)
    colour = colormaps[cmap](heat)[..., :3]
    a = (alpha * heat)[..., None]
    return _png(base * (1.0 - a) + colour * a)
