"""Boxes drawn on an image (PIL): true boxes in one colour, detections per class with label and
score, so the run report, the offline ``predict`` PNG and the service show the same picture."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medsight.errors import InvalidConfig
from medsight.explain.overlay import _display_rgb

Colour = tuple[int, int, int]
# distinguishable on grey and on stained smears; the true boxes' colour is not among them
PALETTE: tuple[Colour, ...] = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (200, 80, 255),
                               (255, 128, 0), (0, 220, 220), (255, 0, 170), (150, 255, 80))
TRUTH_COLOUR: Colour = (0, 230, 90)


def class_colour(index: int) -> Colour:
    """The palette colour of class `index` (cycled)."""
    return PALETTE[int(index) % len(PALETTE)]


def to_rgb_uint8(pixels: np.ndarray) -> np.ndarray:
    """(C, H, W) image -> (H, W, 3) uint8 for drawing (grey stretched between percentiles)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 3:
        raise InvalidConfig(f"boxes are drawn on a 2D image (C, H, W), got shape {pixels.shape}")
    return np.round(_display_rgb(pixels) * 255).astype(np.uint8)


def draw_boxes(
    image_rgb_uint8: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: np.ndarray | Sequence[int],
    scores: np.ndarray | Sequence[float] | None = None,
    classes: Sequence[str] = (),
    colours: Colour | Mapping[int, Colour] | None = None,
    width: int | None = None,
) -> np.ndarray:
    """A copy of `image_rgb_uint8` (H, W, 3) with `boxes` (N, 4) xyxy pixel edges outlined and
    captioned with the class name (``classes[label]``) and the score when given.

    `colours`: one colour for every box (e.g. `TRUTH_COLOUR`), a class index -> colour mapping,
    or None for `class_colour`. Line `width` defaults to about 1/200 of the image's size.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    rgb = np.asarray(image_rgb_uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InvalidConfig(f"draw_boxes needs an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labs = np.asarray(labels, dtype=np.int64).reshape(-1)
    sc = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(labs) != len(xyxy) or (sc is not None and len(sc) != len(xyxy)):
        raise InvalidConfig(f"{len(xyxy)} boxes need as many labels (got {len(labs)}) and scores")
    canvas = PILImage.fromarray(rgb.copy())
    draw = ImageDraw.Draw(canvas)
    lw = int(width) if width else max(1, round(max(rgb.shape[:2]) / 200))
    for i, (x1, y1, x2, y2) in enumerate(xyxy):
        k = int(labs[i])
        colour = _colour(colours, k)
        # edges (x2, y2) are one past the last pixel: PIL draws on pixel centres, inclusive
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=lw)
        name = classes[k] if 0 <= k < len(classes) else str(k)
        text = name if sc is None else f"{name} {sc[i]:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text)
        h = bottom - top
        ty = y1 - h - 3 if y1 - h - 3 >= 0 else y1 + lw  # above the box, inside at the top edge
        draw.rectangle([x1, ty, x1 + right - left + 2, ty + h + 2], fill=colour)
        draw.text((x1 + 1, ty + 1 - (top - y1)), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def _colour(colours: Colour | Mapping[int, Colour] | None, k: int) -> Colour:
    if colours is None:
        return class_colour(k)
    if isinstance(colours, Mapping):
        return tuple(colours.get(k, class_colour(k)))  # type: ignore[return-value]
    return tuple(colours)  # type: ignore[return-value]

