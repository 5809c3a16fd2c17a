"""Split montages: find several panels or specimen sections in one 2D image and cut them apart.

`split_montage` works on one `Image`; `split_montages` turns every record of a `Dataset` into
one child record per panel, referenced as ``region:x0,y0,x1,y1|<parent ref>`` (the scheme lives
in `medsight.data.sources.region`) so the child pixels are cropped lazily from the parent.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from medsight.data.dataset import Dataset, Record
from medsight.data.sources.region import Box, crop_region, region_ref
from medsight.errors import InvalidConfig, UnreadableImage
from medsight.io.image import Image
from medsight.preprocess.base import gray, record
from medsight.preprocess.crop import POLARITIES, foreground_mask

log = logging.getLogger(__name__)

METHODS = ("auto", "projection", "components")


def _drop_specks(mask: np.ndarray, min_size: int) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def _gaps(occupied: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """Segments of `occupied` separated by runs of at least `min_gap` empty entries."""
    idx = np.flatnonzero(occupied)
    if idx.size == 0:
        return []
    segments, start = [], int(idx[0])
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if b - a - 1 >= min_gap:
            segments.append((start, int(a) + 1))
            start = int(b)
    segments.append((start, int(idx[-1]) + 1))
    return segments


def _xy_cut(mask: np.ndarray, y0: int, x0: int, min_gap: int) -> list[Box]:
    """Recursive XY-cut: split at empty row/column bands of at least `min_gap` pixels."""
    if not mask.any():
        return []
    for axis in (0, 1):  # rows first, so panels come out in reading order
        segments = _gaps(mask.any(axis=1 - axis), min_gap)
        if len(segments) > 1:
            boxes: list[Box] = []
            for a, b in segments:
                if axis == 0:
                    boxes += _xy_cut(mask[a:b], y0 + a, x0, min_gap)
                else:
                    boxes += _xy_cut(mask[:, a:b], y0, x0 + a, min_gap)
            return boxes
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [(x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)]


def _components(mask: np.ndarray, min_gap: int) -> list[Box]:
    """Bounding boxes of foreground groups closer than `min_gap` pixels to each other."""
    size = max(min_gap, 1)
    grown = ndimage.binary_dilation(mask, structure=np.ones((size, size), bool))
    labels, n = ndimage.label(grown)
    boxes = []
    for sl in ndimage.find_objects(labels):
        sub = mask[sl]
        rows = np.flatnonzero(sub.any(axis=1))
        cols = np.flatnonzero(sub.any(axis=0))
        if rows.size:
            y0, x0 = sl[0].start, sl[1].start
            boxes.append((x0 + int(cols[0]), y0 + int(rows[0]),
                          x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1))
    return _reading_order(boxes)


def _reading_order(boxes: list[Box]) -> list[Box]:
    """Rows of boxes (a box joins a row when its vertical centre falls inside the row's span),
    top to bottom, each row left to right."""
    rows: list[list[Box]] = []
    for b in sorted(boxes, key=lambda b: (b[1], b[0])):
        centre = (b[1] + b[3]) / 2
        if rows and min(r[1] for r in rows[-1]) <= centre < max(r[3] for r in rows[-1]):
            rows[-1].append(b)
        else:
            rows.append([b])
    return [b for row in rows for b in sorted(row, key=lambda b: b[0])]


def find_panels(
    image: Image,
    min_gap: int = 4,
    min_area_fraction: float = 0.02,
    method: str = "auto",
    polarity: str = "auto",
) -> list[Box]:
    """Panel boxes (x0, y0, x1, y1) in reading order; see `split_montage` for the parameters."""
    if image.is_volume:
        raise InvalidConfig(f"split_montage works on 2D images; {image.source} is a volume")
    if method not in METHODS:
        raise InvalidConfig(f"split_montage: method must be one of {METHODS}, got {method!r}")
    if polarity not in POLARITIES:
        raise InvalidConfig(f"split_montage: polarity must be one of {POLARITIES}, "
                            f"got {polarity!r}")
    if isinstance(min_gap, bool) or not isinstance(min_gap, int) or min_gap < 1:
        raise InvalidConfig(f"split_montage: min_gap must be an int >= 1, got {min_gap!r}")
    if not isinstance(min_area_fraction, (int, float)) or not 0 <= min_area_fraction <= 1:
        raise InvalidConfig(f"split_montage: min_area_fraction must be in [0, 1], "
                            f"got {min_area_fraction!r}")
    mask = foreground_mask(gray(image.pixels), "otsu", polarity, closing_radius=0)
    mask = _drop_specks(mask, max(3, int(0.001 * mask.size)))
    boxes: list[Box] = []
    if method in ("auto", "projection"):
        boxes = _xy_cut(mask, 0, 0, min_gap)
    if method == "components" or (method == "auto" and len(boxes) <= 1):
        boxes = _components(mask, min_gap)
    min_pixels = min_area_fraction * mask.size
    return [b for b in boxes if mask[b[1]:b[3], b[0]:b[2]].sum() >= min_pixels]


def split_montage(
    image: Image,
    min_gap: int = 4,
    min_area_fraction: float = 0.02,
    method: str = "auto",
    polarity: str = "auto",
) -> list[tuple[Image, Box]]:
    """Split a multi-panel 2D image into its panels: ``[(panel image, (x0, y0, x1, y1)), ...]``.

    The foreground is found by Otsu (background = the side the border is on, or forced with
    `polarity`), specks are dropped, then panels are separated by empty row/column bands of at
    least `min_gap` pixels (recursive XY-cut, ``"projection"``) or, for staggered layouts, as
    groups of foreground closer than `min_gap` (``"components"``); ``"auto"`` tries the former
    then the latter. Panels with less than `min_area_fraction` of the image as foreground are
    ignored. Children keep the parent's ids and metadata plus ``metadata["montage"]``. With fewer
    than two panels the image is returned whole, with its full box.
    """
    boxes = find_panels(image, min_gap, min_area_fraction, method, polarity)
    if len(boxes) < 2:
        h, w = image.spatial_shape
        return [(image.with_pixels(image.pixels.copy()), (0, 0, w, h))]
    return [(_panel(image, b, i, len(boxes)), b) for i, b in enumerate(boxes)]


def _panel(image: Image, box: Box, index: int, n: int) -> Image:
    return record(crop_region(image, box, index, n), "split_montage", box=list(box), panel_index=index)


def split_montages(
    dataset: Dataset,
    min_gap: int = 4,
    min_area_fraction: float = 0.02,
    method: str = "auto",
    polarity: str = "auto",
) -> Dataset:
    """A dataset with one record per panel: multi-panel images become ``region:`` children that
    keep the parent's label, patient/study ids and split (meta adds parent_ref, panel_index,
    panel_box, n_panels); single-panel images keep their record. An unreadable image keeps its
    record too (with a logged warning) so the usual quality checks name and count it."""
    records: list[Record] = []
    for i, rec in enumerate(dataset.records):
        try:
            boxes = find_panels(dataset.image(i), min_gap, min_area_fraction, method, polarity)
        except UnreadableImage as exc:
            log.warning("split_montages: keeping unreadable record %s as is: %s", rec.ref, exc)
            boxes = []
        if len(boxes) < 2:
            records.append(rec)
            continue
        for j, box in enumerate(boxes):
            meta = {**rec.meta, "parent_ref": rec.ref, "panel_index": j,
                    "panel_box": list(box), "n_panels": len(boxes)}
            records.append(Record(ref=region_ref(box, rec.ref), label=rec.label,
                                  patient_id=rec.patient_id, study_id=rec.study_id,
                                  split=rec.split, meta=meta))
    return Dataset(records, dataset.task, dataset.classes, name=f"{dataset.name}[panels]",
                   positive_class=dataset.positive_class, cache_size=dataset.cache_size)
