"""Hostile inputs shared by tests: real files altered so that a decoder crashes the process."""

from __future__ import annotations

from conftest import shared_path


def aborting_j2k() -> bytes:
    """MR_small_jp2klossless.dcm with the SIZ precision byte 0x8f made 0x63: GDCM aborts (C++ throw)."""
    data = bytearray(shared_path("dicom", "pydicom", "MR_small_jp2klossless.dcm").read_bytes())
    siz = data.find(b"\xff\x4f\xff\x51") + 2  # the SIZ marker after the codestream's SOC
    ssiz = siz + 40  # Lsiz, Rsiz, 8 x 4-byte sizes, Csiz: then the first component's Ssiz
    assert data[ssiz] == 0x8F, "MR_small_jp2klossless.dcm changed"
    data[ssiz] = 0x63
    return bytes(data)
