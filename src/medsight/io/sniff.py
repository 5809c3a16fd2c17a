"""Guess an image file's format from its first bytes, so readers are chosen by content, not name.

`sniff_format` looks only at magic numbers and header layout; it never trusts a file extension.
Formats it names: ``"dicom"``, ``"nifti"`` (NIfTI-1/2, plain or gzip-compressed), ``"png"``,
``"jpeg"``, ``"tiff"`` and ``"npz"`` (a zip archive, as numpy writes ``.npz``).
"""

from __future__ import annotations

import struct
import zlib

HEAD_BYTES = 1024
"""How many leading bytes a caller should pass to `sniff_format` (more is fine)."""

DICOM_PREAMBLE = 128
_DICM = b"DICM"
_GZIP = b"\x1f\x8b"
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
_NIFTI1_MAGICS = (b"n+1\x00", b"ni1\x00")
_NIFTI2_MAGICS = (b"n+2\x00", b"ni2\x00")
_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)


def sniff_format(head: bytes) -> str | None:
    """Name the format whose signature starts `head` (the file's first bytes), or None if unknown.

    DICOM is recognised by ``DICM`` at offset 128, and also without preamble/File Meta when the
    bytes start like a DICOM data set (a group 0002/0008 element, explicit or implicit VR).
    Gzip data is reported as NIfTI when its decompressed start is a NIfTI header or too short to
    tell (``.nii.gz``); gzip holding anything else is unknown.
    """
    head = bytes(head)
    if len(head) >= DICOM_PREAMBLE + 4 and head[DICOM_PREAMBLE : DICOM_PREAMBLE + 4] == _DICM:
        return "dicom"
    if head.startswith(_GZIP):
        inner = _gunzip_head(head)
        if inner is None or len(inner) < 348 or _is_nifti(inner):
            return "nifti"
        return None
    if _is_nifti(head):
        return "nifti"
    if head.startswith(_PNG):
        return "png"
    if head.startswith(_JPEG):
        return "jpeg"
    if head.startswith(_TIFF):
        return "tiff"
    if head.startswith(_ZIP):
        return "npz"
    if looks_like_raw_dicom(head):
        return "dicom"
    return None


def _is_nifti(head: bytes) -> bool:
    """True when `head` starts with a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header."""
    if len(head) >= 348 and head[344:348] in _NIFTI1_MAGICS:
        return struct.unpack("<i", head[:4])[0] == 348 or struct.unpack(">i", head[:4])[0] == 348
    if len(head) >= 12 and head[4:8] in _NIFTI2_MAGICS:
        return struct.unpack("<i", head[:4])[0] == 540 or struct.unpack(">i", head[:4])[0] == 540
    return False


def _gunzip_head(head: bytes) -> bytes | None:
    """Decompress as much of a gzip stream's start as `head` holds; None if it is not valid gzip."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
    except zlib.error:
        return None


def looks_like_raw_dicom(head: bytes) -> bool:
    """True when `head` plausibly starts a DICOM data set written without preamble and File Meta.

    Cautious on purpose: the first element must be in group 0002 or 0008 (little or big endian),
    with a known explicit VR or a small implicit-VR length; random bytes almost never pass.
    """
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group, element = struct.unpack(order + "HH", head[:4])
        if group not in (0x0002, 0x0008) or element > 0x0FFF:
            continue
        if head[4:6] in _DICOM_VRS:
            return True
        if order == "<" and struct.unpack("<I", head[4:8])[0] <= 256:
            return True  # implicit VR is always little endian
    return False
