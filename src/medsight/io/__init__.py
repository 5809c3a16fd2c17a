"""Image readers: `read_image(path_or_bytes) -> Image` for DICOM, NIfTI, PNG/JPEG/TIFF.

The format is sniffed from the content (`sniff_format`), never taken from the file name.
DICOM series are assembled with `read_dicom_series` (files grouped by `group_series`);
MedMNIST ``.npz`` archives are read one image at a time with `read_npz_image`.
Every failure raises `medsight.errors.UnreadableImage` naming the source and the reason,
decoder panics and decompression bombs included (`medsight.io.limits`). Untrusted files are read
in `medsight.io.decode_pool.DecodePool`, whose worker processes may crash, hang or run out of
memory without taking the caller down. The DICOM series functions load pydicom on first
access (module ``__getattr__``), so importing `medsight.io` to read a PNG stays light.
"""

from __future__ import annotations

from typing import Any

from medsight.io.image import Image, ImageIds
from medsight.io.npz import load_npz_arrays, read_npz_image
from medsight.io.read import read_image
from medsight.io.sniff import sniff_format

__all__ = [
    "Image",
    "ImageIds",
    "group_series",
    "load_npz_arrays",
    "read_dicom_series",
    "read_image",
    "read_npz_image",
    "sniff_format",
]


def __getattr__(name: str) -> Any:
    if name in ("group_series", "read_dicom_series"):
        from medsight.io import dicom_series

        return getattr(dicom_series, name)
    raise AttributeError(f"module 'medsight.io' has no attribute {name!r}")
