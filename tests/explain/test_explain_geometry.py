"""Heatmaps mapped back onto the original image: the recorded crop/resize/pad index maps invert."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.explain import HeatmapGeometryUnknown, new_transforms, to_original, upsample
from medsight.io.image import Image
from medsight.preprocess import Preprocess
from medsight.preprocess.crop import CropForeground
from medsight.preprocess.geometry import CenterCrop, PadTo, Resize


def _ramp(shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    return sum((k + 1.0) * g for k, g in enumerate(grids))


def _round_trip(chain: Preprocess, image: Image) -> tuple[np.ndarray, np.ndarray]:
    out = chain(image)
    back = to_original(out.pixels[0], new_transforms(out.metadata), image.spatial_shape)
    return out.pixels[0], back


def test_resize_with_aspect_and_pad_maps_a_linear_ramp_back() -> None:
    image = Image(_ramp((30, 50))[None].astype(np.float32))
    chain = Preprocess([Resize(16, keep_aspect=True, pad_value=-99.0, anti_aliasing=False)])
    moved, back = _round_trip(chain, image)
    assert moved.shape == (16, 16) and moved.min() == -99.0  # padded rows exist
    # linear interpolation both ways reproduces a linear ramp away from the border
    np.testing.assert_allclose(back[3:-3, 3:-3], image.pixels[0][3:-3, 3:-3], atol=1e-3)


def test_crop_then_resize_puts_a_spot_back_and_zeroes_what_was_cut() -> None:
    px = np.zeros((60, 80), np.float32)
    px[10:50, 20:70] = 100.0  # the "anatomy" the crop keeps
    px[30:34, 50:54] = 300.0  # a bright spot inside it
    image = Image(px[None])
    chain = Preprocess([CropForeground(margin=0), Resize([20, 25], anti_aliasing=False),
                        PadTo(28), CenterCrop(24)])
    out = chain(image)
    assert out.spatial_shape == (24, 24)
    heat = (out.pixels[0] > 200).astype(float)  # the spot, as a model would see it
    back = to_original(heat, new_transforms(out.metadata), image.spatial_shape)
    peak = np.unravel_index(np.argmax(back), back.shape)
    assert 29 <= peak[0] <= 34 and 49 <= peak[1] <= 54
    assert back[:9].max() == 0 and back[:, :19].max() == 0  # cropped away: no heat


def test_volume_resize_round_trip() -> None:
    image = Image(_ramp((8, 12, 10))[None].astype(np.float32))
    moved, back = _round_trip(Preprocess([Resize([16, 6, 10], anti_aliasing=False)]), image)
    assert moved.shape == (16, 6, 10)
    np.testing.assert_allclose(back[1:-1, 2:-2, :], image.pixels[0][1:-1, 2:-2, :], atol=1e-3)


def test_only_transforms_added_by_the_chain_are_inverted() -> None:
    first = Preprocess([CenterCrop(20)])(Image(_ramp((30, 30))[None].astype(np.float32)))
    before = len(first.metadata["geometry"])
    out = Preprocess([Resize(10, anti_aliasing=False)])(first)
    back = to_original(out.pixels[0], new_transforms(out.metadata, before), first.spatial_shape)
    np.testing.assert_allclose(back[2:-2, 2:-2], first.pixels[0][2:-2, 2:-2], atol=1e-3)


def test_unrecorded_grid_change_is_refused() -> None:
    out = Preprocess([Resize(10)])(Image(np.ones((1, 20, 20), np.float32)))
    with pytest.raises(HeatmapGeometryUnknown, match="shape"):
        to_original(np.ones((10, 10)), new_transforms(out.metadata), (25, 20))
    with pytest.raises(HeatmapGeometryUnknown, match="align"):
        new_transforms({"preprocess": [{"step": "align"}], "geometry": []})


def test_upsample_aligns_cell_centres() -> None:
    coarse = np.zeros((4, 4))
    coarse[1, 2] = 1.0
    fine = upsample(coarse, (32, 32))
    peak = np.unravel_index(np.argmax(fine), fine.shape)
    assert 8 <= peak[0] < 16 and 16 <= peak[1] < 24
