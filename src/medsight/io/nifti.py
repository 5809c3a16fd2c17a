"""Read NIfTI-1 / NIfTI-2 (``.nii``, ``.nii.gz``, ``.hdr``/``.img``) with nibabel into an `Image`.

The volume is first reoriented to the closest canonical (RAS+) orientation with
`nibabel.as_closest_canonical`, so array axes (x, y, z) run towards Right, Anterior, Superior.
Axis order in the returned `Image`:

- 3D ``(x, y, z)`` becomes ``(1, D, H, W) = (1, z, y, x)``: depth runs along z (inferior to
  superior), rows along y (posterior to anterior), columns along x (left to right);
- 4D and higher ``(x, y, z, t, ...)`` put time/components on the channel axis: ``(t, z, y, x)``;
- 2D ``(x, y)``, or a volume of one slice, becomes ``(C, H, W) = (C, y, x)``.

``spacing`` is the header zooms reordered the same way (``(z, y, x)`` or ``(y, x)``);
``direction`` columns are the RAS unit vectors of those axes (2D: the third column is z);
``origin`` is the RAS position (mm) of voxel (0, 0, 0). Values are the scaled data
(``get_fdata``: ``scl_slope``/``scl_inter`` applied) as float32.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from medsight.errors import UnreadableImage
from medsight.io.image import Image
from medsight.io.inflate import inflate
from medsight.io.limits import check_inflated, check_voxels

_NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")
_NIFTI1_HEADER = 348
_NIFTI2_HEADER = 540


def read_nifti(source: str | Path | bytes, name: str | None = None) -> Image:
    """Read a NIfTI file path (any name) or its bytes (optionally gzip-compressed)."""
    label = str(name if name is not None else ("<bytes>" if isinstance(source, bytes) else source))
    try:
        img = _load(source, label)
        check_declared_size(img.header, label)
        canonical = nib.as_closest_canonical(img)
        data = canonical.get_fdata(dtype=np.float32, caching="unchanged")
    except UnreadableImage:
        raise
    except FileNotFoundError:
        raise UnreadableImage(label, "file not found") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnreadableImage(label, f"truncated or corrupt compressed NIfTI: {exc}") from exc
    except (ImageFileError, HeaderDataError, OSError, ValueError, TypeError, KeyError) as exc:
        reason = "truncated NIfTI data" if "too short" in str(exc).lower() else "corrupt NIfTI"
        raise UnreadableImage(label, f"{reason}: {type(exc).__name__}: {exc}") from exc
    return _to_image(img, canonical, data, label)


def check_declared_size(header: nib.Nifti1Header, label: str) -> int:
    """Bytes the header says the file holds (data offset + voxels x bytes per voxel), within limits.

    Raises `UnreadableImage` "too large" for more than `MAX_VOXELS` values or `MAX_INFLATED_BYTES`.
    """
    shape = tuple(int(s) for s in header.get_data_shape())
    count = int(np.prod(shape, dtype=np.int64)) if all(s >= 0 for s in shape) else -1
    if count < 0:
        raise UnreadableImage(label, f"corrupt NIfTI: negative dimension in shape {shape}")
    check_voxels(count, label, shape)
    size = int(header.get_data_offset()) + count * header.get_data_dtype().itemsize
    check_inflated(size, label, f"NIfTI data of shape {shape}")
    return size


def open_nifti(data: bytes, name: str) -> nib.Nifti1Pair:
    """The nibabel image of a NIfTI file's bytes (gzip inflated within limits), data not read
    yet: its header can be checked or cleaned first."""
    img = _load(data, name)
    check_declared_size(img.header, name)
    return img


def _load(source: str | Path | bytes, label: str) -> nib.Nifti1Pair:
    """nibabel image from a conventionally named path, else from the (decompressed) bytes.

    Gzip bytes are inflated in two bounded steps: the header first, whose declared size is
    checked, then exactly the bytes it declares (`medsight.io.inflate`), so a bomb is refused
    after a few hundred bytes and trailing data is never inflated.
    """
    if not isinstance(source, bytes):
        path = Path(source)
        if path.name.lower().endswith(_NIBABEL_SUFFIXES):
            img = nib.load(path)
            if not isinstance(img, nib.Nifti1Pair):
                raise UnreadableImage(label, f"not a NIfTI image but {type(img).__name__}")
            return img
        source = path.read_bytes()
    gzipped = source[:2] == b"\x1f\x8b"
    what = "gzip-compressed NIfTI"
    head = inflate(source, label, what=what, want=_NIFTI2_HEADER) if gzipped else source
    klass, header = _header(head, label)
    if not gzipped:
        return klass.from_bytes(source)
    size = check_declared_size(header, label)
    return klass.from_bytes(inflate(source, label, what=what, want=max(size, len(head))))


def _header(head: bytes, label: str) -> tuple[type[nib.Nifti1Image], nib.Nifti1Header]:
    """The image class and the parsed header (no extensions) of a single-file NIfTI's first bytes."""
    if len(head) < 4:
        raise UnreadableImage(label, "truncated NIfTI header")
    sizeof_hdr = {struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]}
    if _NIFTI2_HEADER in sizeof_hdr:
        klass: type[nib.Nifti1Image] | type[nib.Nifti2Image] = nib.Nifti2Image
        magic = head[4:8]
    elif _NIFTI1_HEADER in sizeof_hdr:
        klass, magic = nib.Nifti1Image, head[344:348]
    else:
        raise UnreadableImage(label, "not a NIfTI header (sizeof_hdr is neither 348 nor 540)")
    if magic in (b"ni1\x00", b"ni2\x00"):
        raise UnreadableImage(
            label, "header of a .hdr/.img pair: read it by its .hdr path so the .img is found"
        )
    size = _NIFTI2_HEADER if klass is nib.Nifti2Image else _NIFTI1_HEADER
    if len(head) < size:
        raise UnreadableImage(label, f"truncated NIfTI header: {len(head)} of {size} bytes")
    return klass, klass.header_class.from_fileobj(io.BytesIO(head[:size]), check=False)


def _to_image(original: Any, canonical: Any, data: np.ndarray, label: str) -> Image:
    """Reorder canonical (x, y, z, ...) data to channels-first (C, z, y, x) or (C, y, x)."""
    zooms = [float(z) if z and z > 0 else 1.0 for z in canonical.header.get_zooms()]
    while len(zooms) < 3:
        zooms.append(1.0)
    affine = np.asarray(canonical.affine, dtype=np.float64)
    axes = affine[:3, :3] / np.maximum(np.linalg.norm(affine[:3, :3], axis=0), 1e-12)
    if data.ndim == 2:
        data = data[:, :, None]
    x, y, z = data.shape[:3]
    channels = int(np.prod(data.shape[3:], dtype=np.int64))
    volume = data.reshape(x, y, z, channels).transpose(3, 2, 1, 0)  # (C, z, y, x)
    if z == 1:
        pixels = volume[:, 0]
        spacing: tuple[float, ...] = (zooms[1], zooms[0])
        direction = axes[:, [1, 0, 2]]
    else:
        pixels = volume
        spacing = (zooms[2], zooms[1], zooms[0])
        direction = axes[:, [2, 1, 0]]
    header = original.header
    units = header.get_xyzt_units()
    slope = getattr(original.dataobj, "slope", None)  # nibabel moves scl_* onto the proxy
    inter = getattr(original.dataobj, "inter", None)
    metadata: dict[str, Any] = {
        "format": "nifti",
        "nifti_version": 2 if isinstance(header, nib.Nifti2Header) else 1,
        "original_orientation": "".join(nib.aff2axcodes(original.affine)),
        "original_shape": tuple(int(s) for s in original.shape),
        "datatype": str(original.get_data_dtype()),
        "spatial_unit": units[0],
        "time_unit": units[1],
        "scl_slope": None if slope is None else float(slope),
        "scl_inter": None if inter is None else float(inter),
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
    }
    if len(original.shape) > 3:
        metadata["time_step"] = float(header.get_zooms()[3])
    return Image(
        pixels=np.ascontiguousarray(pixels),
        spacing=spacing,
        direction=direction,
        origin=tuple(float(v) for v in affine[:3, 3]),
        photometric="MONOCHROME2",
        source=label,
        metadata=metadata,
    )
