"""Boxes follow the recorded preprocessing geometry forward onto the model grid and back."""

import numpy as np
import pytest

from medsight.boxes import Boxes, Detections
from medsight.io.image import Image
from medsight.preprocess.box_geometry import BoxGeometryUnknown, boxes_back, boxes_forward
from medsight.preprocess.chain import Preprocess


def _square_image() -> Image:
    px = np.zeros((3, 480, 640), np.float32)
    px[:, 100:200, 300:340] = 1.0
    return Image(pixels=px)


@pytest.mark.parametrize("chain", [
    [{"resize": {"size": [256, 256], "keep_aspect": True, "anti_aliasing": False}},
     {"center_crop": {"size": [180, 240]}}],
    [{"pad_to": {"size": [500, 700]}}, {"resize": {"size": [250, 350], "anti_aliasing": False}}],
])
def test_box_lands_on_the_object_and_comes_back(chain):
    out = Preprocess.from_config(chain)(_square_image())
    geometry = out.metadata["geometry"]
    moved = boxes_forward([[300, 100, 340, 200]], geometry)
    ys, xs = np.nonzero(out.pixels[0] > 0.5)
    np.testing.assert_allclose(moved[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=0.5)
    np.testing.assert_allclose(boxes_back(moved, geometry, (480, 640)), [[300, 100, 340, 200]],
                               atol=1e-9)


def test_clipping_and_3d_maps():
    geometry = [{"kind": "crop", "in_shape": [10, 10], "out_shape": [5, 5], "scale": [1, 1],
                 "offset": [5, 5]}]
    assert boxes_forward([[0, 0, 8, 8]], geometry, clip_shape=(5, 5)).tolist() == [[0, 0, 3, 3]]
    with pytest.raises(BoxGeometryUnknown, match="2D"):
        boxes_forward([[0, 0, 1, 1]], [{"kind": "resize", "scale": [1, 1, 1], "offset": [0, 0, 0]}])


def test_boxes_and_detections_types():
    b = Boxes.from_arrays([[0, 0, 2, 3], [1, 1, 4, 4]], [1, 0])
    assert b.counts(3).tolist() == [1, 1, 0] and b.array().dtype == np.float32
    with pytest.raises(ValueError, match="labels"):
        Boxes(((0, 0, 1, 1),), ())
    d = Detections([[0, 0, 1, 1], [2, 2, 3, 3]], [0.2, 0.9], [1, 1])
    assert d.scores.tolist() == pytest.approx([0.9, 0.2]) and d.counts(2, 0.5).tolist() == [0, 1]
    assert len(d.above(0.5)) == 1
