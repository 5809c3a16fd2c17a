"""Size guard shared by the DICOM and NIfTI readers against decompression bombs.

A header can declare far more voxels than the (compressed) file holds; decoding it would
exhaust memory. Readers call `check_voxels` with the declared size before decoding.
PNG/JPEG/TIFF use their own `medsight.io.raster.MAX_PIXELS`.
"""

from __future__ import annotations

from medsight.errors import UnreadableImage

MAX_VOXELS = 500_000_000
"""Largest number of values (all frames, channels, time points) a DICOM or NIfTI may declare."""


def check_voxels(count: int, source: str, shape: tuple[int, ...]) -> None:
    """Raise `UnreadableImage` "too large" when `count` declared values exceed `MAX_VOXELS`."""
    if count > MAX_VOXELS:
        raise UnreadableImage(
            source,
            f"too large: shape {shape} declares {count} values, more than "
            f"medsight.io.limits.MAX_VOXELS = {MAX_VOXELS}",
        )
