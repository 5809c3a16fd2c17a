"""Refuse a deflated DICOM whose data set inflates past the limit, before pydicom inflates it.

pydicom inflates a *Deflated Explicit VR Little Endian* data set in one ``zlib.decompress``
call, so a few kilobytes could ask for gigabytes. `check_deflated_size` measures the stream
first, chunk by chunk and keeping nothing (`medsight.io.inflate`), and raises `UnreadableImage`
"too large" past `MAX_INFLATED_BYTES`. Other transfer syntaxes cost one short peek.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from medsight.io.inflate import DEFLATE_WBITS, inflate

DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
_PEEK = 4096
_PREAMBLE = 132
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


def check_deflated_size(source: str | Path | BinaryIO, name: str) -> None:
    """Raise `UnreadableImage` when `source`'s File Meta names deflate and it inflates too far."""
    if DEFLATED_UID not in _read(source, _PEEK):
        return
    data = _read(source, None)
    inflate(data[_dataset_start(data):], name, what="deflated DICOM data set",
            wbits=DEFLATE_WBITS, keep=False)


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
