"""Where DICOM pixels sit in the patient: spacing, orientation and position, classic or enhanced.

Values are looked up first in the enhanced multi-frame functional groups (per-frame item of the
first frame, then the shared item), then at the top level of the data set. Conventions match
`medsight.io.image.Image`: spacing follows the spatial axes, ``(row, col)`` for one frame and
``(slice, row, col)`` for several; ``direction`` columns are the LPS unit vectors of those axes.
For a 2D image the third column is the plane normal (row cosines x column cosines), so the
matrix is always 3x3 and right-handed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

_FLOAT_TOL = 1e-4


def functional_item(ds: Dataset, sequence: str, frame: int = 0) -> Dataset | None:
    """The first item of `sequence` inside frame `frame`'s functional group, else the shared one."""
    places = (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0))
    for groups, index in places:
        items = ds.get(groups)
        if items is None or len(items) <= index:
            continue
        inner = items[index].get(sequence)
        if inner:
            return inner[0]
    return None


def lookup(ds: Dataset, keyword: str, sequence: str, frame: int = 0) -> Any:
    """Value of `keyword` from the functional group `sequence` (enhanced) or the top level."""
    item = functional_item(ds, sequence, frame)
    if item is not None and item.get(keyword) is not None:
        return item.get(keyword)
    return ds.get(keyword)


def pixel_spacing(ds: Dataset) -> tuple[tuple[float, float], str]:
    """(row spacing, column spacing) in mm and which attribute gave it ("default" when none)."""
    candidates = (
        ("PixelSpacing", lookup(ds, "PixelSpacing", "PixelMeasuresSequence")),
        ("ImagerPixelSpacing", ds.get("ImagerPixelSpacing")),
        ("NominalScannedPixelSpacing", ds.get("NominalScannedPixelSpacing")),
    )
    for name, value in candidates:
        pair = float_list(value)
        if len(pair) == 2 and all(v > 0 for v in pair):
            return (pair[0], pair[1]), name
    return (1.0, 1.0), "default"


def orientation(ds: Dataset, frame: int = 0) -> np.ndarray | None:
    """ImageOrientationPatient as a (2, 3) array (row cosines, column cosines), or None."""
    iop = float_list(lookup(ds, "ImageOrientationPatient", "PlaneOrientationSequence", frame))
    if len(iop) != 6:
        return None
    cosines = np.asarray(iop, dtype=np.float64).reshape(2, 3)
    norms = np.linalg.norm(cosines, axis=1)
    if np.any(norms < 0.5):
        return None
    return cosines / norms[:, None]


def position(ds: Dataset, frame: int = 0) -> np.ndarray | None:
    """ImagePositionPatient (mm, LPS) of frame `frame`, or None."""
    ipp = float_list(lookup(ds, "ImagePositionPatient", "PlanePositionSequence", frame))
    return np.asarray(ipp, dtype=np.float64) if len(ipp) == 3 else None


def slice_normal(cosines: np.ndarray) -> np.ndarray:
    """Unit normal of the image plane: row cosines x column cosines."""
    normal = np.cross(cosines[0], cosines[1])
    return normal / np.linalg.norm(normal)


def direction_2d(cosines: np.ndarray | None) -> np.ndarray | None:
    """3x3 direction for a single frame: columns = row axis, column axis, plane normal."""
    if cosines is None:
        return None
    return np.column_stack([cosines[1], cosines[0], slice_normal(cosines)])


def direction_3d(
    cosines: np.ndarray | None, slice_axis: np.ndarray | None = None
) -> np.ndarray | None:
    """3x3 direction of a stack: columns = slice axis (default: normal), row axis, column axis."""
    if cosines is None:
        return None
    axis = slice_normal(cosines) if slice_axis is None else slice_axis
    return np.column_stack([axis, cosines[1], cosines[0]])


def frame_geometry(ds: Dataset, frames: int) -> tuple[float, str, np.ndarray | None]:
    """Slice spacing (mm), its source, and the slice-axis unit vector for a multi-frame data set.

    Preference: distances between per-frame positions projected on the normal; then
    SpacingBetweenSlices; SliceThickness; RT Dose GridFrameOffsetVector; else 1.0 ("default").
    """
    cosines = orientation(ds)
    if cosines is not None and "PerFrameFunctionalGroupsSequence" in ds:
        positions = [position(ds, f) for f in range(frames)]
        if all(p is not None for p in positions) and frames > 1:
            normal = slice_normal(cosines)
            along = np.array([float(np.dot(p, normal)) for p in positions])
            steps = np.diff(along)
            spacing = float(np.median(np.abs(steps)))
            if spacing > _FLOAT_TOL:
                sign = 1.0 if np.median(steps) >= 0 else -1.0
                return spacing, "ImagePositionPatient", sign * normal
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = float_list(lookup(ds, keyword, "PixelMeasuresSequence"))
        if value and value[0] > 0:
            return value[0], keyword, None
    offsets = float_list(ds.get("GridFrameOffsetVector"))
    if len(offsets) > 1:
        step = float(np.median(np.abs(np.diff(offsets))))
        if step > 0:
            return step, "GridFrameOffsetVector", None
    return 1.0, "default", None


def float_list(value: Any) -> list[float]:
    """DICOM numeric value(s) as a list of floats; [] for missing or unparsable values."""
    if value is None or isinstance(value, bytes):
        return []
    if isinstance(value, str):
        value = [value] if value.strip() else []
    elif not isinstance(value, Iterable):
        value = [value]
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return []
