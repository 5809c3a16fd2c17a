"""Assemble single-slice DICOM files into one volume, and group files by series.

`read_dicom_series` orders slices by ImagePositionPatient projected on the slice normal
(ascending, so depth runs along the normal = row cosines x column cosines), falling back to
InstanceNumber when positions or orientation are missing. All slices must share size,
samples per pixel and orientation. The slice spacing is the median distance between
neighbouring positions; uneven gaps are flagged in ``metadata["irregular_slice_spacing"]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from medsight.errors import UnreadableImage
from medsight.io import dicom_geometry as geo
from medsight.io.dicom import (
    check_not_truncated,
    check_pixel_module,
    dataset_ids,
    dataset_metadata,
    describe_object,
    load_dataset,
    text_value,
)
from medsight.io.dicom_pixels import decode, has_pixel_data, number_of_frames
from medsight.io.image import Image, ImageIds
from medsight.io.panics import is_panic, panic_reason
from medsight.io.sniff import HEAD_BYTES, sniff_format

_ORIENTATION_TOL = 1e-3
_IRREGULAR_FRACTION = 0.01


def group_series(
    paths: Iterable[str | Path],
    *,
    on_error: Callable[[Path, UnreadableImage], None] | None = None,
) -> dict[str, list[Path]]:
    """Map SeriesInstanceUID -> files of that series, reading headers only (no pixel data).

    A file that is not DICOM or has no SeriesInstanceUID raises `UnreadableImage`, or, when
    `on_error` is given, is passed to it (so the caller can count and report it) and skipped.
    Files keep the order they were given in; `read_dicom_series` sorts them spatially.
    """
    groups: dict[str, list[Path]] = {}
    for raw in paths:
        path = Path(raw)
        try:
            uid = _guarded(str(path), _series_uid, path)
        except UnreadableImage as exc:
            if on_error is None:
                raise
            on_error(path, exc)
            continue
        groups.setdefault(uid, []).append(path)
    return groups


def read_dicom_series(files: Sequence[str | Path]) -> Image:
    """Stack single-frame DICOM files of one series into a ``(C, D, H, W)`` volume."""
    paths = [Path(f) for f in files]
    if not paths:
        raise UnreadableImage("<DICOM series>", "no files given")
    label = _series_label(paths)
    return _guarded(label, _assemble, paths, label)


def _guarded(label: str, func: Callable[..., Any], *args: Any) -> Any:
    """Run `func`; any error that is not already `UnreadableImage` is wrapped, naming `label`."""
    try:
        return func(*args)
    except UnreadableImage:
        raise
    except MemoryError:
        raise UnreadableImage(label, "too large: out of memory while decoding") from None
    except Exception as exc:
        raise UnreadableImage(label, f"unexpected {type(exc).__name__}: {exc}") from exc
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise UnreadableImage(label, panic_reason(exc)) from exc


def _assemble(paths: list[Path], label: str) -> Image:
    """Load, check, order, decode and stack the slices."""
    datasets = [_load_slice(p) for p in paths]
    _check_same_series(datasets, label)
    _check_same_grid(datasets, paths)
    order, along, slice_order = _slice_order(datasets, paths, label)
    datasets = [datasets[i] for i in order]
    paths = [paths[i] for i in order]
    decoded = [decode(ds, str(p)) for ds, p in zip(datasets, paths, strict=True)]
    photometrics = {facts["photometric"] for _, facts in decoded}
    if len(photometrics) != 1:
        mixed = sorted(photometrics)
        raise UnreadableImage(label, f"slices mix photometric interpretations {mixed}")
    pixels = np.concatenate([px for px, _ in decoded], axis=1)  # (C, D, H, W)
    first, facts = datasets[0], decoded[0][1]
    (row_mm, col_mm), spacing_source = geo.pixel_spacing(first)
    metadata = dataset_metadata(first, facts)
    slice_mm = _slice_spacing(first, along)
    metadata.update(
        spacing_source=spacing_source,
        slice_order=slice_order,
        number_of_slices=len(paths),
        series_files=[str(p) for p in paths],
        irregular_slice_spacing=_irregular(along, slice_mm),
    )
    if along is not None:
        metadata["slice_positions"] = [float(v) for v in along]
    origin = geo.position(first)
    ids = dataset_ids(first)
    return Image(
        pixels=pixels,
        spacing=(slice_mm, row_mm, col_mm),
        direction=geo.direction_3d(geo.orientation(first)),
        origin=tuple(float(v) for v in origin) if origin is not None else None,
        modality=text_value(first, "Modality"),
        photometric=facts["photometric"],
        ids=ImageIds(ids.patient_id, ids.study_uid, ids.series_uid, None),
        source=label,
        metadata=metadata,
    )


def _series_uid(path: Path) -> str:
    """SeriesInstanceUID of one file, checking first that its bytes look like DICOM."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except FileNotFoundError:
        raise UnreadableImage(path, "file not found") from None
    except IsADirectoryError:
        raise UnreadableImage(path, "is a directory, not a file") from None
    except OSError as exc:
        raise UnreadableImage(path, f"cannot open: {exc}") from exc
    if not head:
        raise UnreadableImage(path, "empty file")
    if sniff_format(head) != "dicom":
        raise UnreadableImage(path, "not a DICOM file")
    ds = load_dataset(path, str(path), stop_before_pixels=True)
    uid = text_value(ds, "SeriesInstanceUID")
    if uid is None:
        raise UnreadableImage(path, f"no SeriesInstanceUID ({describe_object(ds)})")
    return uid


def _series_label(paths: list[Path]) -> str:
    """How the series is named in errors: its common folder and the number of files."""
    try:
        folder = os.path.commonpath([str(p.parent) for p in paths])
    except ValueError:
        folder = str(paths[0].parent)
    return f"DICOM series in {folder} ({len(paths)} files)"


def _load_slice(path: Path) -> Dataset:
    """Parse one slice and check it has single-frame pixel data."""
    ds = load_dataset(path, str(path))
    if not has_pixel_data(ds):
        raise UnreadableImage(path, f"no pixel data ({describe_object(ds)} holds no image)")
    check_pixel_module(ds, str(path))
    check_not_truncated(ds, str(path))
    if number_of_frames(ds) > 1:
        raise UnreadableImage(
            path, "multi-frame file inside a series: read it on its own with read_image"
        )
    return ds


def _check_same_series(datasets: list[Dataset], label: str) -> None:
    """Refuse files from different series (use `group_series` first)."""
    uids = {text_value(ds, "SeriesInstanceUID") for ds in datasets} - {None}
    if len(uids) > 1:
        raise UnreadableImage(
            label, f"files belong to {len(uids)} different series; split them with group_series"
        )


def _check_same_grid(datasets: list[Dataset], paths: list[Path]) -> None:
    """All slices need the first slice's rows, columns, samples and orientation."""
    ref = datasets[0]
    ref_shape = (int(ref.Rows), int(ref.Columns), int(ref.get("SamplesPerPixel", 1) or 1))
    ref_cosines = geo.orientation(ref)
    for ds, path in zip(datasets[1:], paths[1:], strict=True):
        shape = (int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1) or 1))
        if shape != ref_shape:
            raise UnreadableImage(
                path,
                f"rows x columns x samples {shape} differ from {ref_shape} of {paths[0]}: "
                "not one volume",
            )
        cosines = geo.orientation(ds)
        if (cosines is None) != (ref_cosines is None) or (
            cosines is not None and np.abs(cosines - ref_cosines).max() > _ORIENTATION_TOL
        ):
            raise UnreadableImage(
                path,
                f"ImageOrientationPatient {_fmt(cosines)} differs from {_fmt(ref_cosines)} "
                f"of {paths[0]}: slices are not parallel, not one volume",
            )


def _slice_order(
    datasets: list[Dataset], paths: list[Path], label: str
) -> tuple[list[int], np.ndarray | None, str]:
    """Indices in spatial order, the sorted positions along the normal, and how it was ordered."""
    cosines = geo.orientation(datasets[0])
    positions = [geo.position(ds) for ds in datasets]
    if cosines is not None and all(p is not None for p in positions):
        normal = geo.slice_normal(cosines)
        along = np.array([float(np.dot(p, normal)) for p in positions])
        order = [int(i) for i in np.argsort(along, kind="stable")]
        along = along[order]
        gaps = np.diff(along)
        if gaps.size and gaps.min() < 1e-4:
            i = int(np.argmin(gaps))
            raise UnreadableImage(
                label,
                f"{paths[order[i]]} and {paths[order[i + 1]]} lie at the same position "
                f"({along[i]:.3f} mm along the normal): more than one acquisition in this list",
            )
        return order, along, "position"
    numbers = [geo.float_list(ds.get("InstanceNumber")) for ds in datasets]
    if all(numbers):
        keys = [n[0] for n in numbers]
        return [int(i) for i in np.argsort(keys, kind="stable")], None, "instance_number"
    return list(range(len(datasets))), None, "as_given"


def _slice_spacing(first: Dataset, along: np.ndarray | None) -> float:
    """Median gap between positions; else SpacingBetweenSlices / SliceThickness; else 1.0."""
    if along is not None and along.size > 1:
        return float(np.median(np.diff(along)))
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = geo.float_list(first.get(keyword))
        if value and value[0] > 0:
            return value[0]
    return 1.0


def _irregular(along: np.ndarray | None, spacing: float) -> bool:
    """True when some gap differs from the median gap by more than 1 % (plus 1 micron)."""
    if along is None or along.size < 3:
        return False
    gaps = np.diff(along)
    return bool(np.abs(gaps - spacing).max() > _IRREGULAR_FRACTION * spacing + 1e-3)


def _fmt(cosines: Any) -> str:
    if cosines is None:
        return "(missing)"
    return "[" + ", ".join(f"{v:.4f}" for v in np.ravel(cosines)) + "]"
