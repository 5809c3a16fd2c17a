"""`read_image`: one entry point that sniffs a file's content and hands it to the right reader.

Accepts a path (str or PathLike) or an upload (bytes, bytearray, memoryview, or a binary
file-like such as BytesIO). The reader is chosen from the first bytes (`sniff_format`), never
from the file name. Anything that goes wrong becomes `UnreadableImage` naming the source and
the reason; no library exception escapes. The DICOM and NIfTI readers (pydicom, nibabel) are
imported on the first file of their format, so reading PNGs never loads them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from medsight.errors import UnreadableImage
from medsight.io.image import Image
from medsight.io.panics import is_panic, panic_reason
from medsight.io.raster import read_raster
from medsight.io.sniff import HEAD_BYTES, sniff_format

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

_NPZ_HINT = (
    "a .npz archive holds many images, not one: read one with "
    "medsight.io.read_npz_image(path, key, index) or load it as a dataset with the medmnist source"
)
_MIN_DICOM_ELEMENTS = 5


def read_image(source: ImageSource) -> Image:
    """Read a DICOM, NIfTI, PNG, JPEG or TIFF image from a path or uploaded bytes."""
    label, path, data = _open(source)
    try:
        return _dispatch(label, path, data)
    except UnreadableImage:
        raise
    except MemoryError:
        raise UnreadableImage(label, "too large: out of memory while decoding") from None
    except Exception as exc:  # the boundary promise: never a bare library exception
        raise UnreadableImage(label, f"unexpected {type(exc).__name__}: {exc}") from exc
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise UnreadableImage(label, panic_reason(exc)) from exc


def _open(source: ImageSource) -> tuple[str, Path | None, bytes | None]:
    """(label, path, data): exactly one of path/data is set; empty or missing input is refused."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = "<bytes>"
    elif hasattr(source, "read"):
        label = str(getattr(source, "name", None) or "<upload>")
        try:
            data = source.read()  # type: ignore[union-attr]
        except Exception as exc:
            raise UnreadableImage(label, f"cannot read the upload: {exc}") from exc
        if not isinstance(data, bytes | bytearray):
            raise UnreadableImage(label, "upload must be opened in binary mode")
        data = bytes(data)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        label = str(path)
        if not path.exists():
            raise UnreadableImage(label, "file not found")
        if path.is_dir():
            raise UnreadableImage(
                label, "is a directory; for a DICOM series use read_dicom_series(files)"
            )
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise UnreadableImage(label, f"cannot access file: {exc}") from exc
        if size == 0:
            raise UnreadableImage(label, "empty file (0 bytes)")
        return label, path, None
    else:
        kind = type(source).__name__
        raise UnreadableImage(repr(source)[:80], f"cannot read images from a {kind}")
    if not data:
        raise UnreadableImage(label, "empty upload (0 bytes)")
    return label, None, data


def _head(path: Path | None, data: bytes | None, label: str) -> bytes:
    if data is not None:
        return data[:HEAD_BYTES]
    assert path is not None
    try:
        with path.open("rb") as handle:
            return handle.read(HEAD_BYTES)
    except OSError as exc:
        raise UnreadableImage(label, f"cannot open: {exc}") from exc


def _dispatch(label: str, path: Path | None, data: bytes | None) -> Image:
    """Send the source to the reader its content calls for."""
    head = _head(path, data, label)
    fmt = sniff_format(head)
    if fmt == "dicom":
        from medsight.io.dicom import read_dicom

        return read_dicom(path if path is not None else io.BytesIO(data or b""), label)
    if fmt == "nifti":
        from medsight.io.nifti import read_nifti

        return read_nifti(path if path is not None else (data or b""), label)
    if fmt in ("png", "jpeg", "tiff"):
        return read_raster(path if path is not None else io.BytesIO(data or b""), label)
    if fmt == "npz":
        raise UnreadableImage(label, _NPZ_HINT)
    if head.startswith(b"\x1f\x8b"):
        raise UnreadableImage(label, "unknown format: gzip-compressed data that is not NIfTI")
    image = _second_try_dicom(path, data, label)
    if image is not None:
        return image
    raise UnreadableImage(
        label,
        "unknown format: not DICOM, NIfTI, PNG, JPEG, TIFF or npz "
        f"(first bytes {head[:8].hex(' ')})",
    )


def _second_try_dicom(path: Path | None, data: bytes | None, label: str) -> Image | None:
    """Cautiously parse unrecognised bytes as DICOM without preamble; None unless it clearly is.

    Accepted only when pydicom finds an image pixel module (Rows, Columns, pixel data) and a
    handful of elements: random bytes parsed with ``force=True`` never look like that.
    """
    from medsight.io.dicom import dataset_to_image, load_dataset
    from medsight.io.dicom_pixels import has_pixel_data

    try:
        ds = load_dataset(path if path is not None else io.BytesIO(data or b""), label)
    except UnreadableImage:
        return None
    plausible = (
        len(ds) >= _MIN_DICOM_ELEMENTS
        and has_pixel_data(ds)
        and isinstance(ds.get("Rows"), int)
        and isinstance(ds.get("Columns"), int)
        and ds.get("SOPClassUID") is not None
    )
    if not plausible:
        return None
    return dataset_to_image(ds, label)
