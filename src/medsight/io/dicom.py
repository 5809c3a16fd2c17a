"""Read one DICOM file (any transfer syntax pydicom's plugins decode) into an `Image`.

Single-frame files give ``(C, H, W)``; multi-frame files put the frames on the depth axis,
``(C, D, H, W)``. Pixel values follow `medsight.io.dicom_pixels` (Modality LUT applied, CT in HU,
MONOCHROME1 inverted and reported as MONOCHROME2, colour as RGB, VOI LUT/window *not* applied).
Window settings are kept in ``metadata`` (``window_center``/``window_width``, first value, in
the units of the returned pixels) with ``voi_lut_present`` when a VOI LUT Sequence exists.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medsight.errors import UnreadableImage
from medsight.io import dicom_geometry as geo
from medsight.io.dicom_deflate import check_deflated_size
from medsight.io.dicom_pixels import PIXEL_KEYWORDS, decode, has_pixel_data, number_of_frames
from medsight.io.image import Image, ImageIds
from medsight.io.limits import check_voxels

_HEADER_ERRORS = (
    InvalidDicomError, BytesLengthException, ValueError, KeyError, TypeError, AttributeError,
    NotImplementedError, OSError,  # pydicom: unknown VR; "No tag to read at file position"
)
_TEXT_METADATA = {
    "body_part": "BodyPartExamined",
    "manufacturer": "Manufacturer",
    "manufacturer_model": "ManufacturerModelName",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "view_position": "ViewPosition",
    "laterality": "ImageLaterality",
    "rescale_type": "RescaleType",
}


def load_dataset(
    source: str | Path | BinaryIO, name: str, *, stop_before_pixels: bool = False
) -> Dataset:
    """Parse a DICOM file (preamble optional) and make sure it names a transfer syntax.

    Raises `UnreadableImage` for missing, empty, truncated or unparsable files.
    """
    try:
        check_deflated_size(source, name)
        ds = pydicom.dcmread(source, force=True, stop_before_pixels=stop_before_pixels)
    except FileNotFoundError:
        raise UnreadableImage(name, "file not found") from None
    except IsADirectoryError:
        raise UnreadableImage(name, "is a directory, not a file") from None
    except PermissionError as exc:
        raise UnreadableImage(name, f"cannot open: {exc}") from exc
    except (EOFError, struct.error, OverflowError) as exc:
        raise UnreadableImage(name, f"truncated DICOM file: {exc}") from exc
    except _HEADER_ERRORS as exc:
        raise UnreadableImage(name, f"corrupt DICOM header: {type(exc).__name__}: {exc}") from exc
    if len(ds) == 0:
        if len(ds.get("file_meta") or ()) > 0:
            raise UnreadableImage(name, "truncated DICOM file: nothing after the File Meta header")
        raise UnreadableImage(name, "no DICOM data elements found (empty or not DICOM)")
    _ensure_transfer_syntax(ds)
    return ds


def read_dicom(source: str | Path | BinaryIO, name: str | None = None) -> Image:
    """Read a DICOM file or file-like object into an `Image`; `name` labels it in errors."""
    label = str(name if name is not None else source)
    ds = load_dataset(source, label)
    return dataset_to_image(ds, label)


def dataset_to_image(ds: Dataset, source: str) -> Image:
    """Turn a parsed data set with pixel data into an `Image` (geometry, ids, metadata).

    pydicom converts element values when they are first used, so a corrupt value can surface
    here rather than in `load_dataset`; it is reported as a corrupt header too.
    """
    try:
        return _dataset_to_image(ds, source)
    except UnreadableImage:
        raise
    except _HEADER_ERRORS as exc:
        raise UnreadableImage(source, f"corrupt DICOM header: {type(exc).__name__}: {exc}") from exc


def _dataset_to_image(ds: Dataset, source: str) -> Image:
    if not has_pixel_data(ds):
        raise UnreadableImage(source, f"no pixel data ({describe_object(ds)} holds no image)")
    check_pixel_module(ds, source)
    check_not_truncated(ds, source)
    pixels, facts = decode(ds, source)
    frames = pixels.shape[1]
    cosines = geo.orientation(ds)
    (row_mm, col_mm), spacing_source = geo.pixel_spacing(ds)
    metadata = dataset_metadata(ds, facts)
    metadata["spacing_source"] = spacing_source
    origin = geo.position(ds)
    if frames == 1:
        spacing: tuple[float, ...] = (row_mm, col_mm)
        direction = geo.direction_2d(cosines)
        pixels = pixels[:, 0]
    else:
        slice_mm, slice_source, slice_axis = geo.frame_geometry(ds, frames)
        metadata["slice_spacing_source"] = slice_source
        spacing = (slice_mm, row_mm, col_mm)
        direction = geo.direction_3d(cosines, slice_axis)
    return Image(
        pixels=pixels,
        spacing=spacing,
        direction=direction,
        origin=tuple(float(v) for v in origin) if origin is not None else None,
        modality=text_value(ds, "Modality"),
        photometric=facts["photometric"],
        ids=dataset_ids(ds),
        source=source,
        metadata=metadata,
    )


def dataset_ids(ds: Dataset) -> ImageIds:
    """Patient, study, series and SOP instance identifiers (None when absent or empty)."""
    return ImageIds(
        patient_id=text_value(ds, "PatientID"),
        study_uid=text_value(ds, "StudyInstanceUID"),
        series_uid=text_value(ds, "SeriesInstanceUID"),
        sop_uid=text_value(ds, "SOPInstanceUID"),
    )


def describe_object(ds: Dataset) -> str:
    """A short human name for what the data set is, e.g. 'RTPLAN (RT Plan Storage)'."""
    modality = text_value(ds, "Modality")
    meta = ds.get("file_meta")
    sop_class = ds.get("SOPClassUID") or getattr(meta, "MediaStorageSOPClassUID", None)
    kind = getattr(sop_class, "name", None) if sop_class else None
    if modality and kind:
        return f"{modality} ({kind})"
    return modality or kind or "this DICOM object"


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without File Meta get the transfer syntax their encoding implies."""
    meta = ds.get("file_meta")
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    if "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        implicit, little = True, True
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def check_pixel_module(ds: Dataset, source: str) -> None:
    """Rows/Columns/BitsAllocated must exist for pixel data to be interpretable."""
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if ds.get(k) in (None, "")]
    if missing:
        raise UnreadableImage(source, f"corrupt image pixel module: missing {', '.join(missing)}")
    if int(ds.Rows) <= 0 or int(ds.Columns) <= 0:
        raise UnreadableImage(source, f"invalid image size {ds.Rows}x{ds.Columns}")
    frames = number_of_frames(ds)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    shape = (frames, int(ds.Rows), int(ds.Columns), samples)
    check_voxels(frames * int(ds.Rows) * int(ds.Columns) * samples, source, shape)


def check_not_truncated(ds: Dataset, source: str) -> None:
    """Refuse pixel data holding fewer bytes than its element length declares (cut-off file)."""
    for keyword in PIXEL_KEYWORDS:
        if keyword not in ds:
            continue
        element = ds.get_item(keyword)
        declared = getattr(element, "length", None)
        value = element.value
        if declared in (None, 0xFFFFFFFF) or not isinstance(value, bytes):
            continue
        if len(value) < declared:
            raise UnreadableImage(
                source, f"truncated pixel data: {keyword} holds {len(value)} of {declared} bytes"
            )


def text_value(ds: Dataset, keyword: str) -> str | None:
    """A top-level element as a stripped string, None when absent or empty."""
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first_float(value: Any) -> float | None:
    values = geo.float_list(value)
    return values[0] if values else None


def _first_int(value: Any) -> int | None:
    number = _first_float(value)
    return int(number) if number is not None else None


def dataset_metadata(ds: Dataset, facts: dict[str, Any]) -> dict[str, Any]:
    """Useful scalars: transfer syntax, pixel module, window settings, rescale, description."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    meta: dict[str, Any] = {
        "format": "dicom",
        "transfer_syntax": str(tsyntax),
        "transfer_syntax_name": tsyntax.name,
        "sop_class_uid": text_value(ds, "SOPClassUID"),
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "number_of_frames": number_of_frames(ds),
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1) or 1),
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.get("BitsStored") or ds.BitsAllocated),
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "instance_number": _first_int(ds.get("InstanceNumber")),
        "slice_thickness": _first_float(geo.lookup(ds, "SliceThickness", "PixelMeasuresSequence")),
    }
    for key, keyword in _TEXT_METADATA.items():
        meta[key] = text_value(ds, keyword)
    meta.update({k: v for k, v in facts.items() if k != "photometric"})
    center = _first_float(geo.lookup(ds, "WindowCenter", "FrameVOILUTSequence"))
    width = _first_float(geo.lookup(ds, "WindowWidth", "FrameVOILUTSequence"))
    if center is not None and facts.get("inverted"):
        center = facts["inversion_pivot"] - center  # same window on the inverted values
    meta["window_center"] = center
    meta["window_width"] = width
    meta["voi_lut_present"] = bool(ds.get("VOILUTSequence")) or bool(
        geo.lookup(ds, "VOILUTSequence", "FrameVOILUTSequence")
    )
    dose_scaling = _first_float(ds.get("DoseGridScaling"))
    if dose_scaling is not None:
        meta["dose_grid_scaling"] = dose_scaling
    return meta
