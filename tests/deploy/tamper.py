"""Test helper: a bundle's members, and a copy of it with one byte of one member changed (the zip
rewritten with valid CRCs, so only the manifest's sha256 can catch it)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from medsight.deploy.bundle_archive import bundle_bytes


def members(path: Path) -> dict[str, bytes]:
    """Every member of a `.msb` bundle by name."""
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def flip(data: bytes, at: int, mask: int = 0x01) -> bytes:
    """`data` with the byte at `at` XOR-ed with `mask`."""
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1:]


def tampered_copy(bundle: Path, member: str, out: Path, at: int | None = None, mask: int = 0x01) -> Path:
    """`bundle` written to `out` with one byte of `member` changed (default: its middle byte)."""
    files = members(bundle)
    data = files[member]
    files[member] = flip(data, len(data) // 2 if at is None else at, mask)
    out.write_bytes(bundle_bytes(files))
    return out
