"""Size limits shared by the readers against decompression bombs, checked before decoding.

A header can declare far more voxels than the (compressed) file holds, and a small gzip, deflate
or zip stream can inflate to gigabytes; decoding either would exhaust memory. Readers call
`check_voxels` with the declared size, and inflate through `medsight.io.inflate`, which stops at
`MAX_INFLATED_BYTES`; zip archives are checked with `check_zip_members` before any member is read.
PNG/JPEG/TIFF use their own `medsight.io.raster.MAX_PIXELS`.
"""

from __future__ import annotations

import zipfile

from medsight.errors import UnreadableImage

MAX_VOXELS = 500_000_000
"""Largest number of values (all frames, channels, time points) a DICOM or NIfTI may declare."""

MAX_INFLATED_BYTES = 2_000_000_000
"""Largest size a gzip NIfTI, a deflated DICOM data set or one zip member may inflate to."""

MAX_ZIP_MEMBERS = 1_000
"""Most members a zip (``.npz``) archive may hold."""


def check_voxels(count: int, source: str, shape: tuple[int, ...]) -> None:
    """Raise `UnreadableImage` "too large" when `count` declared values exceed `MAX_VOXELS`."""
    if count > MAX_VOXELS:
        raise UnreadableImage(
            source,
            f"too large: shape {shape} declares {count} values, more than "
            f"medsight.io.limits.MAX_VOXELS = {MAX_VOXELS}",
        )


def check_inflated(size: int, source: str, what: str) -> None:
    """Raise `UnreadableImage` "too large" when `size` (declared or inflated so far) is over the cap."""
    if size > MAX_INFLATED_BYTES:
        raise UnreadableImage(
            source,
            f"too large: {what} inflates to more than "
            f"medsight.io.limits.MAX_INFLATED_BYTES = {MAX_INFLATED_BYTES} bytes",
        )


def check_zip_members(archive: zipfile.ZipFile, source: str) -> None:
    """Refuse an archive with too many members or a member whose declared size is over the cap.

    Python's zipfile never returns more than a member's declared size, so checking the declared
    sizes also caps what is streamed out of a lying archive.
    """
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise UnreadableImage(
            source,
            f"too many zip members: {len(members)}, more than "
            f"medsight.io.limits.MAX_ZIP_MEMBERS = {MAX_ZIP_MEMBERS}",
        )
    for info in members:
        check_inflated(info.file_size, source, f"zip member {info.filename!r}")
