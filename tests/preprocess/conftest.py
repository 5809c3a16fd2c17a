"""Fixtures for the preprocessing tests: a real CT slice (pydicom's CT_small.dcm) and a
synthetic 'anatomy' image with a black border, burned-in text and noise specks."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medsight.io.image import Image, ImageIds

#: where the synthetic anatomy sits: rows [BLOB_ROWS), cols [BLOB_COLS)
BLOB_ROWS = (30, 91)
BLOB_COLS = (25, 76)


@pytest.fixture(scope="session")
def ct_slice() -> Image:
    """CT_small.dcm in Hounsfield units, read with pydicom directly, as a (1, 128, 128) Image."""
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return Image(
        pixels=hu[None],
        spacing=tuple(float(s) for s in ds.PixelSpacing),
        modality="CT",
        photometric="MONOCHROME2",
        ids=ImageIds(patient_id=str(ds.PatientID), study_uid=str(ds.StudyInstanceUID)),
        source=str(path),
        metadata={"window_center": 40.0, "window_width": 400.0},
    )


def make_anatomy(seed: int = 0) -> Image:
    """A textured bright ellipse (with dark 'lungs' inside) on a black 120x100 background,
    burned-in text in the top-left corner and isolated noise specks."""
    rng = np.random.default_rng(seed)
    h, w = 120, 100
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (BLOB_ROWS[0] + BLOB_ROWS[1] - 1) / 2, (BLOB_COLS[0] + BLOB_COLS[1] - 1) / 2
    ry, rx = (BLOB_ROWS[1] - BLOB_ROWS[0]) / 2, (BLOB_COLS[1] - BLOB_COLS[0]) / 2
    body = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    img = rng.normal(0.02, 0.01, (h, w))
    img[body] = 0.6 + 0.2 * rng.random(body.sum())
    lungs = (((yy - cy) / (ry * 0.5)) ** 2 + ((xx - cx + rx * 0.4) / (rx * 0.25)) ** 2 <= 1) | (
        ((yy - cy) / (ry * 0.5)) ** 2 + ((xx - cx - rx * 0.4) / (rx * 0.25)) ** 2 <= 1
    )
    img[lungs] = 0.1
    # burned-in text "L 12" strokes in the top-left corner
    for r0, r1, c0, c1 in [(3, 11, 3, 5), (9, 11, 3, 9), (3, 11, 12, 14), (3, 5, 17, 22),
                           (5, 7, 20, 22), (7, 9, 17, 22), (9, 11, 17, 22)]:
        img[r0:r1, c0:c1] = 1.0
    # isolated specks in the border
    for r, c in [(100, 5), (110, 90), (15, 85), (60, 3), (115, 50), (5, 60)]:
        img[r, c] = 0.9
    return Image(pixels=img[None].astype(np.float32), spacing=(0.5, 0.5), source="anatomy")


@pytest.fixture
def anatomy() -> Image:
    return make_anatomy()


@pytest.fixture
def blob_box() -> tuple[tuple[int, int], tuple[int, int]]:
    """(row start, row stop), (col start, col stop) of the anatomy in `anatomy`."""
    return BLOB_ROWS, BLOB_COLS
