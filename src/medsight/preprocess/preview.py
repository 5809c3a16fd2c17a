"""`preview_grid`: a before/after figure of preprocessing, for the CLI preview and reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import InvalidConfig
from medsight.io.image import Image

if TYPE_CHECKING:  # matplotlib takes ~0.7 s to import: loaded when a preview is drawn
    from matplotlib.figure import Figure


def display_array(image: Image | np.ndarray) -> tuple[np.ndarray, str | None]:
    """A 2D (grey) or HxWx3 (RGB) array in [0, 1] to show; volumes show their middle slice."""
    px = image.pixels if isinstance(image, Image) else np.asarray(image, dtype=np.float32)
    if px.ndim == 2:
        px = px[None]
    if px.ndim == 4:
        px = px[:, px.shape[1] // 2]
    if px.ndim != 3:
        raise InvalidConfig(f"cannot display an array of shape {px.shape}")
    x = px[:3].astype(np.float64) if px.shape[0] >= 3 else px[:1].astype(np.float64)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if x.shape[0] == 3:
        return np.moveaxis(x, 0, -1), None
    return x[0], "gray"


def _label(image: Image | np.ndarray) -> str:
    shape = image.pixels.shape if isinstance(image, Image) else np.shape(image)
    return "x".join(str(s) for s in shape)


def preview_grid(
    images_before: Sequence[Image | np.ndarray],
    images_after: Sequence[Image | np.ndarray],
    titles: Sequence[str] | None = None,
    cell_inches: float = 2.5,
) -> Figure:
    """A figure with one row per image: before on the left, after on the right (Agg backend).

    Each panel is min-max scaled on its own and labelled with its array shape; volumes show the
    middle slice. Save it with ``fig.savefig("preview.png")``.
    """
    if len(images_before) != len(images_after):
        raise InvalidConfig(
            f"preview_grid: {len(images_before)} images before but {len(images_after)} after"
        )
    if not images_before:
        raise InvalidConfig("preview_grid: no images to show")
    if titles is not None and len(titles) != len(images_before):
        raise InvalidConfig(f"preview_grid: {len(titles)} titles for {len(images_before)} images")
    n = len(images_before)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2 * cell_inches, n * cell_inches))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 2, squeeze=False)
    for i, (before, after) in enumerate(zip(images_before, images_after, strict=True)):
        for j, (img, stage) in enumerate(((before, "before"), (after, "after"))):
            ax = axes[i][j]
            arr, cmap = display_array(img)
            ax.imshow(arr, cmap=cmap, interpolation="nearest")
            name = f"{titles[i]} - " if titles is not None else ""
            ax.set_title(f"{name}{stage} ({_label(img)})", fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    return fig
