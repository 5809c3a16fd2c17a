"""crop_foreground: the anatomy is kept, the border, burned-in text and specks are cut away."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess import CropForeground


@pytest.mark.parametrize("method", ["otsu", "canny"])
def test_crop_keeps_blob_and_drops_border_text_specks(anatomy, blob_box, method):
    (br0, br1), (bc0, bc1) = blob_box
    out = CropForeground(method=method, margin=0)(anatomy)
    rec = out.metadata["preprocess"][-1]
    assert rec["found"] is True
    (r0, c0), (r1, c1) = rec["start"], rec["stop"]
    assert abs(r0 - br0) <= 2 and abs(r1 - br1) <= 2
    assert abs(c0 - bc0) <= 2 and abs(c1 - bc1) <= 2
    assert out.pixels.shape == (1, r1 - r0, c1 - c0)
    assert rec["box_xyxy"] == [c0, r0, c1, r1]
    # the text (rows 3-11, cols 3-22) and every speck lie outside the box
    assert r0 > 11 and c0 > 3
    np.testing.assert_array_equal(out.pixels[0], anatomy.pixels[0, r0:r1, c0:c1])
    removed = rec["removed_fraction"]
    assert removed["top"] == pytest.approx(r0 / 120) and removed["right"] == pytest.approx(
        (100 - c1) / 100
    )


def test_crop_margin_and_origin(anatomy):
    img = anatomy.with_pixels(anatomy.pixels)
    img.origin = (10.0, 20.0)
    img.direction = np.eye(2)
    tight = CropForeground(margin=0)(img).metadata["preprocess"][-1]
    out = CropForeground(margin=3)(img)
    loose = out.metadata["preprocess"][-1]
    assert loose["start"] == [tight["start"][0] - 3, tight["start"][1] - 3]
    assert loose["stop"] == [tight["stop"][0] + 3, tight["stop"][1] + 3]
    # first voxel moved by start * spacing (0.5 mm)
    assert out.origin == pytest.approx((10 + 0.5 * loose["start"][0], 20 + 0.5 * loose["start"][1]))
    assert out.spacing == img.spacing


def test_crop_dark_anatomy_on_bright_background(anatomy, blob_box):
    (br0, _), (_, bc1) = blob_box
    inverted = anatomy.with_pixels(1.0 - anatomy.pixels)
    rec = CropForeground(margin=0)(inverted).metadata["preprocess"][-1]
    assert abs(rec["start"][0] - br0) <= 2 and abs(rec["stop"][1] - bc1) <= 2


def test_crop_nothing_found_keeps_image():
    blank = Image(np.zeros((1, 40, 30), np.float32), source="blank")
    out = CropForeground()(blank)
    np.testing.assert_array_equal(out.pixels, blank.pixels)
    rec = out.metadata["preprocess"][-1]
    assert rec["found"] is False and "no foreground" in rec["reason"]
    specks = np.zeros((1, 40, 30), np.float32)
    specks[0, 5, 5] = specks[0, 30, 20] = 1.0
    out = CropForeground(min_area_fraction=0.05)(Image(specks))
    assert out.pixels.shape == specks.shape and out.metadata["preprocess"][-1]["found"] is False


def test_crop_volume():
    vol = np.zeros((1, 20, 30, 40), np.float32)
    zz, yy, xx = np.mgrid[:20, :30, :40]
    vol[0][((zz - 10) / 6) ** 2 + ((yy - 12) / 8) ** 2 + ((xx - 25) / 10) ** 2 <= 1] = 1.0
    vol[0, 1, 1, 1] = 1.0  # a speck
    out = CropForeground(margin=0)(Image(vol))
    rec = out.metadata["preprocess"][-1]
    assert rec["start"] == [4, 4, 15] and rec["stop"] == [17, 21, 36]
    assert out.pixels.shape == (1, 13, 17, 21)
    assert set(rec["removed_fraction"]) == {"first_slices", "last_slices", "top", "bottom",
                                            "left", "right"}


def test_crop_bad_parameters():
    with pytest.raises(InvalidConfig, match="method"):
        CropForeground(method="sobel")
    with pytest.raises(InvalidConfig, match="margin"):
        CropForeground(margin=-1)
