"""Refuse a deflated DICOM whose data set inflates past the limit, before pydicom inflates it.

pydicom inflates a *Deflated Explicit VR Little Endian* data set in one ``zlib.decompress``
call, so a few kilobytes could ask for gigabytes. `check_deflated_size` measures the stream
first, chunk by chunk and keeping nothing (`medsight.io.inflate`), and raises `UnreadableImage`
"too large" past the pixel data its header declares plus `HEADER_ROOM`, and never past
`MAX_INFLATED_BYTES`. Other transfer syntaxes cost one short peek.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

from pydicom.filereader import read_dataset

from medsight.io.inflate import DEFLATE_WBITS, inflate

DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
HEADER_ROOM = 64 << 20
"""Bytes a deflated data set may hold on top of the pixel data its header declares."""

_PEEK = 4096
_PREFIX = 256 << 10
_PREAMBLE = 132
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


def check_deflated_size(source: str | Path | BinaryIO, name: str) -> None:
    """Raise `UnreadableImage` when `source`'s File Meta names deflate and it inflates too far.

    The start is inflated and parsed up to the image pixel module (group 0028: Rows, Columns,
    ...): the stream may not inflate past that pixel data plus `HEADER_ROOM` (`HEADER_ROOM` alone
    when it declares none: such a data set holds no image to read), nor past `MAX_INFLATED_BYTES`.
    """
    if DEFLATED_UID not in _read(source, _PEEK):
        return
    data = _read(source, None)
    body = data[_dataset_start(data) :]
    what = "deflated DICOM data set"
    prefix = inflate(body, name, what=what, wbits=DEFLATE_WBITS, want=_PREFIX)
    limit = (_declared_pixel_bytes(prefix) or 0) + HEADER_ROOM
    inflate(body, name, what=what, wbits=DEFLATE_WBITS, keep=False, limit=limit)


def _declared_pixel_bytes(prefix: bytes) -> int | None:
    """Bytes of pixel data the data set's start declares; None when it declares no image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_dataset(io.BytesIO(prefix), is_implicit_VR=False, is_little_endian=True,
                              stop_when=lambda tag, vr, length: not 0x0008 <= tag.group <= 0x0028)
            sizes = [int(ds.get(k) or 1) for k in ("NumberOfFrames", "SamplesPerPixel")]
            rows, columns, bits = (int(ds[k].value) for k in ("Rows", "Columns", "BitsAllocated"))
    except Exception:  # no image module, a mutated value, a header longer than the prefix ...
        return None
    if min(rows, columns, bits, *sizes) < 1:
        return None
    return rows * columns * sizes[0] * sizes[1] * max(bits, 8) // 8


def _read(source: str | Path | BinaryIO, size: int | None) -> bytes:
    """The first `size` bytes (all when None); a file-like is left where it was."""
    if isinstance(source, str | Path):
        with open(source, "rb") as handle:
            return handle.read(size if size is not None else -1)
    position = source.tell()
    try:
        return source.read(size if size is not None else -1)
    finally:
        source.seek(position)


def _dataset_start(data: bytes) -> int:
    """Offset of the first byte after the File Meta group (0002), which is never deflated."""
    pos = _PREAMBLE if data[128:132] == b"DICM" else 0
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                break
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return min(pos, len(data))
