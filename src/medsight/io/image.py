"""The `Image` every reader returns: float32 pixels, channels first, with geometry and ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ImageIds:
    """DICOM-style identifiers; any may be None when the format has no such notion."""

    patient_id: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None


@dataclass
class Image:
    """Pixels plus what is needed to interpret them.

    Layout: float32, channels first. 2D images are ``(C, H, W)``; volumes are ``(C, D, H, W)``.
    ``spacing`` gives the physical size (mm) of one pixel along each *spatial* axis, in the same
    order as the spatial axes (``(row, col)`` or ``(slice, row, col)``). ``direction`` is the 3x3
    matrix whose columns are the patient-space (LPS for DICOM, RAS for NIfTI) directions of the
    spatial axes, when known. ``metadata`` holds format details such as DICOM window settings.
    """

    pixels: np.ndarray
    spacing: tuple[float, ...] = ()
    direction: np.ndarray | None = None
    origin: tuple[float, ...] | None = None
    modality: str | None = None
    photometric: str | None = None
    ids: ImageIds = field(default_factory=ImageIds)
    source: str = "<memory>"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        px = np.asarray(self.pixels)
        if px.ndim not in (3, 4):
            raise ValueError(
                f"Image pixels must be (C,H,W) or (C,D,H,W); "
                f"got shape {px.shape} from {self.source}"
            )
        self.pixels = px.astype(np.float32, copy=False)
        if not self.spacing:
            self.spacing = (1.0,) * (px.ndim - 1)
        self.spacing = tuple(float(s) for s in self.spacing)
        if len(self.spacing) != px.ndim - 1:
            raise ValueError(f"spacing {self.spacing} does not match pixel shape {px.shape}")

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.pixels.shape[1:])

    @property
    def is_volume(self) -> bool:
        return self.pixels.ndim == 4

    def shifted_origin(self, offset: tuple[float, ...],
                       spacing: tuple[float, ...] | None = None) -> tuple[float, ...] | None:
        """The patient-space position of the voxel `offset` voxels from the first one (in units of
        `spacing`, default this image's): the origin after a crop, pad or panel cut.

        Direction columns are the patient-space directions of the spatial axes. Returns the old
        origin unchanged when geometry is unknown or does not fit.
        """
        if self.origin is None:
            return None
        origin = np.asarray(self.origin, dtype=float)
        n = len(offset)
        direction = np.eye(len(origin)) if self.direction is None else np.asarray(self.direction)
        if direction.ndim != 2 or direction.shape[0] != len(origin) or direction.shape[1] < n:
            return self.origin
        step = np.asarray(self.spacing if spacing is None else spacing, dtype=float)
        move = direction[:, :n] @ (np.asarray(offset, dtype=float) * step)
        return tuple(float(v) for v in origin + move)

    def with_pixels(self, pixels: np.ndarray, spacing: tuple[float, ...] | None = None) -> Image:
        """A copy of this image with new pixels (and optionally spacing); ids and metadata kept."""
        return Image(
            pixels=pixels,
            spacing=self.spacing if spacing is None else spacing,
            direction=self.direction,
            origin=self.origin,
            modality=self.modality,
            photometric=self.photometric,
            ids=self.ids,
            source=self.source,
            metadata=dict(self.metadata),
        )
