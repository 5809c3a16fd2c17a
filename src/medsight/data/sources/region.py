"""``region:x0,y0,x1,y1|<parent ref>`` references: one rectangle of a 2D parent image, cropped lazily.

A montage's panels (see `medsight.preprocess.montage`) are records with such refs, so a dataset
names each panel without copying pixels (x = column, y = row, ends exclusive).
"""

from __future__ import annotations

from typing import Any

from medsight.data.refs import register_scheme, resolve
from medsight.errors import InvalidConfig, UnreadableImage
from medsight.io.image import Image

Box = tuple[int, int, int, int]
CHILD_KEYS = ("parent_ref", "panel_index", "panel_box", "n_panels")  # record meta a panel adds


def region_ref(box: Box, parent_ref: str) -> str:
    """The reference of a panel: ``region:x0,y0,x1,y1|<parent ref>``."""
    return f"region:{','.join(str(int(v)) for v in box)}|{parent_ref}"


def crop_region(image: Image, box: Box, index: int | None = None, n: int | None = None) -> Image:
    """The part of a 2D image inside `box` (x0, y0, x1, y1), with the panel noted in
    ``metadata["montage"]``; the origin moves to the panel's first pixel."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = image.spatial_shape[-2:]
    if image.is_volume or not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise InvalidConfig(
            f"region {list(box)} does not fit {image.source} of shape {image.pixels.shape}"
        )
    out = image.with_pixels(image.pixels[:, y0:y1, x0:x1].copy())
    out.origin = image.shifted_origin((y0, x0))
    out.metadata = dict(out.metadata)
    out.metadata["montage"] = {"panel_index": index, "box": [x0, y0, x1, y1], "n_panels": n,
                               "parent_source": image.source}
    if index is not None:
        out.source = f"{image.source}[panel {index}]"
    return out


def _resolve_region(rest: str, meta: dict[str, Any]) -> Image:
    """Resolver of ``region:`` refs: read the parent ref and crop the box."""
    box_text, sep, parent_ref = rest.partition("|")
    try:
        box = tuple(int(v) for v in box_text.split(","))
    except ValueError:
        box = ()
    if not sep or len(box) != 4 or not parent_ref:
        raise UnreadableImage(f"region:{rest}", "expected region:x0,y0,x1,y1|<parent ref>")
    parent = resolve(parent_ref, {k: v for k, v in meta.items() if k not in CHILD_KEYS})
    try:
        return crop_region(parent, box, meta.get("panel_index"), meta.get("n_panels"))  # type: ignore[arg-type]
    except InvalidConfig as exc:
        raise UnreadableImage(f"region:{rest}", str(exc)) from exc


register_scheme("region", _resolve_region)
