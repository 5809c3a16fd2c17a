"""resize / pad_to / center_crop: shapes, aspect ratio, padding values, spacing, 3D."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess import CenterCrop, PadTo, Resize
from medsight.preprocess.geometry import resize_pixels


def test_resize_plain_updates_spacing():
    img = Image(np.random.default_rng(0).random((2, 40, 20)), spacing=(0.5, 1.0))
    out = Resize((20, 40))(img)
    assert out.pixels.shape == (2, 20, 40)
    assert out.spacing == pytest.approx((1.0, 0.5))  # physical extent 20 mm x 20 mm kept


def test_resize_keep_aspect_pads_centred():
    px = np.ones((1, 100, 50), np.float32) * 5
    img = Image(px, spacing=(0.8, 0.8))
    out = Resize((64, 64), keep_aspect=True)(img)
    assert out.pixels.shape == (1, 64, 64)
    rec = out.metadata["preprocess"][-1]
    assert rec["resized_shape"] == [64, 32] and rec["pad"] == [[0, 0], [16, 16]]
    content = out.pixels[0] == 5
    rows, cols = np.flatnonzero(content.any(1)), np.flatnonzero(content.any(0))
    assert (rows[-1] - rows[0] + 1) / (cols[-1] - cols[0] + 1) == pytest.approx(100 / 50)
    assert np.all(out.pixels[0, :, :16] == 0) and np.all(out.pixels[0, :, 48:] == 0)
    assert out.spacing == pytest.approx((0.8 * 100 / 64, 0.8 * 50 / 32))


def test_resize_pad_value_min():
    px = np.full((1, 30, 10), -1000.0, np.float32)
    px[0, 10:20, 3:7] = 50
    out = Resize(30, keep_aspect=True, pad_value="min")(Image(px)).pixels
    assert out.shape == (1, 30, 30) and out[0, 0, 0] == -1000


def test_resize_volume():
    vol = Image(np.random.default_rng(1).random((1, 10, 20, 30)), spacing=(2.0, 1.0, 1.0))
    out = Resize((5, 10, 15))(vol)
    assert out.pixels.shape == (1, 5, 10, 15)
    assert out.spacing == pytest.approx((4.0, 2.0, 2.0))
    aspect = Resize(16, keep_aspect=True)(vol)
    assert aspect.pixels.shape == (1, 16, 16, 16)
    assert aspect.metadata["preprocess"][-1]["resized_shape"] == [5, 11, 16]


def test_resize_nearest_keeps_label_values():
    px = np.zeros((1, 8, 8))
    px[0, :4] = 3
    out = Resize((16, 16), order=0, anti_aliasing=False)(Image(px)).pixels
    assert set(np.unique(out)) == {0.0, 3.0}


def test_pad_and_crop_are_inverse_on_content():
    img = Image(np.arange(6 * 8, dtype=np.float32).reshape(1, 6, 8))
    padded = PadTo((10, 9))(img)
    assert padded.pixels.shape == (1, 10, 9)
    np.testing.assert_array_equal(padded.pixels[0, 2:8, 0:8], img.pixels[0])
    back = CenterCrop((6, 8))(padded)
    np.testing.assert_array_equal(back.pixels, img.pixels)
    assert CenterCrop(4)(img).pixels.shape == (1, 4, 4)
    assert PadTo(4)(img).pixels.shape == (1, 6, 8)  # never crops


def test_pad_moves_origin():
    img = Image(np.zeros((1, 4, 4)), spacing=(2.0, 3.0), origin=(0.0, 0.0), direction=np.eye(2))
    out = PadTo((8, 6))(img)
    assert out.origin == pytest.approx((-4.0, -3.0))


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"size": [3, 4, 5, 6]}, {"size": "big"},
                                    {"size": 8, "order": 7}, {"size": 8, "pad_value": "max"}])
def test_resize_bad_parameters(kwargs):
    with pytest.raises(InvalidConfig):
        Resize(**kwargs)


def test_size_axes_must_match_image():
    with pytest.raises(InvalidConfig, match="axes"):
        Resize((4, 4, 4))(Image(np.zeros((1, 8, 8))))


@pytest.mark.parametrize("shape,size", [((1, 28, 28), (20, 20)), ((3, 17, 40), (33, 9)),
                                        ((2, 9, 12, 7), (16, 5, 7)), ((1, 1, 30), (4, 61))])
@pytest.mark.parametrize("anti_aliasing", [True, False])
def test_linear_resize_matches_skimage(shape, size, anti_aliasing) -> None:
    """The numpy linear resize (no scikit-image import) is skimage's resize to float32 rounding."""
    from skimage.transform import resize

    x = np.random.default_rng(0).random(shape).astype(np.float32) * 1000
    ref = resize(x.astype(np.float64), (shape[0], *size), order=1, mode="edge", preserve_range=True,
                 anti_aliasing=anti_aliasing)
    got = resize_pixels(x, size, 1, anti_aliasing)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-7 * 1000)
