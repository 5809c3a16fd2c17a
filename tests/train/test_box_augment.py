"""Box-aware augmentation: boxes follow a bright square through flips, zoom, crop and rotation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.errors import InvalidConfig
from medsight.train.augment import DETECTION_PRESETS, BoxAugment, BoxAugmentConfig

H, W = 64, 80
SQUARE = (16.0, 12.0, 44.0, 40.0)  # x1, y1, x2, y2 in pixel edges


def _square_batch(n: int, channels: int = 1) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    x = torch.zeros(n, channels, H, W)
    x1, y1, x2, y2 = (int(v) for v in SQUARE)
    x[:, :, y1:y2, x1:x2] = 1.0
    return x, [np.array([SQUARE], np.float32)] * n, [np.array([2])] * n


def _bright_box(img: torch.Tensor) -> tuple[float, float, float, float] | None:
    rows, cols = np.nonzero(img.mean(0).numpy() > 0.5)
    if not len(rows):
        return None
    return float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


@pytest.mark.parametrize("options", [
    {"hflip": True},
    {"vflip": True},
    {"scale": (0.6, 1.5)},
    {"crop": (0.4, 1.0)},
    {"translate": 0.2},
    {"rotate": 15},
    {"preset": "detection", "rotate": 10},
])
def test_the_box_still_encloses_the_square_tightly(options):
    aug = BoxAugment(BoxAugmentConfig.from_config(options))
    x, boxes, labels = _square_batch(24)
    out, moved, kept_labels = aug(x, boxes, labels, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    n_kept = 0
    for img, b, lab in zip(out, moved, kept_labels, strict=True):
        truth = _bright_box(img)
        if len(b):
            n_kept += 1
            assert lab.tolist() == [2] and b.dtype == torch.float32
            assert truth is not None and _iou(b[0].tolist(), truth) > 0.9, (b, truth)
        else:  # dropped: most of the square left the image
            visible = 0 if truth is None else (truth[2] - truth[0]) * (truth[3] - truth[1])
            assert visible < 0.5 * 28**2 * 1.5**2
    assert n_kept >= 18
    if options.get("hflip"):
        assert {tuple(b[0].tolist()) for b in moved} == {SQUARE, (W - 44.0, 12.0, W - 16.0, 40.0)}


def test_boxes_mostly_cropped_out_of_the_image_are_dropped_with_their_label():
    n, side, zoom = 64, 16, 2.0
    x = torch.zeros(n, 1, H, W)
    x[:, :, :side, :side] = 1.0  # a square in the corner: a 2x zoom often crops it away
    boxes, labels = [np.array([[0, 0, side, side]], np.float32)] * n, [np.array([1])] * n
    aug = BoxAugment(BoxAugmentConfig(scale=(zoom, zoom)))
    out, moved, kept = aug(x, boxes, labels, torch.Generator().manual_seed(0))
    full = (side * zoom) ** 2
    outcomes = set()
    for img, b, lab in zip(out, moved, kept, strict=True):
        visible = float((img[0] > 0.5).sum())
        outcomes.add(len(b))
        if len(b):
            assert lab.tolist() == [1] and visible >= 0.3 * full
            assert _iou(b[0].tolist(), _bright_box(img)) > 0.9
        else:
            assert lab.tolist() == [] and visible <= 0.5 * full
    assert outcomes == {0, 1}


def test_partly_visible_boxes_are_clipped_to_the_image():
    aug = BoxAugment(BoxAugmentConfig(translate=0.5, min_visible=0.0))
    x, boxes, labels = _square_batch(32)
    _, moved, _ = aug(x, boxes, labels, torch.Generator().manual_seed(1))
    every = torch.cat(moved)
    assert (every[:, 0] >= 0).all() and (every[:, 2] <= W).all()
    assert (every[:, 1] >= 0).all() and (every[:, 3] <= H).all()
    assert (every[:, 2] > every[:, 0]).all()


def test_identity_and_repeatability():
    x, boxes, labels = _square_batch(4, channels=3)
    out, moved, _ = BoxAugment(BoxAugmentConfig.from_config(None))(x, boxes, labels,
                                                                 torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and all(b.tolist() == [list(SQUARE)] for b in moved)
    aug = BoxAugment(BoxAugmentConfig.from_config("detection"))
    a = aug(x, boxes, labels, torch.Generator().manual_seed(5))
    b = aug(x, boxes, labels, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and all(torch.equal(p, q) for p, q in zip(a[1], b[1], strict=True))
    assert torch.equal(x, _square_batch(4, channels=3)[0])  # input untouched


def test_colour_jitter_changes_rgb_hue_but_keeps_grey_pixels_grey():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 16, 16, generator=g)
    grey = x.mean(1, keepdim=True).expand(-1, 3, -1, -1).clone()
    aug = BoxAugment(BoxAugmentConfig(saturation=0.3, hue=0.1))
    empty = [np.zeros((0, 4))] * 8
    out, _, _ = aug(x, empty, [np.zeros(0)] * 8, torch.Generator().manual_seed(1))
    assert not torch.allclose(out, x, atol=1e-3)
    out_grey, _, _ = aug(grey, empty, [np.zeros(0)] * 8, torch.Generator().manual_seed(1))
    assert torch.allclose(out_grey, grey, atol=1e-5)  # no chroma: nothing to rotate or scale
    one = torch.rand(2, 1, 16, 16, generator=g)
    assert torch.equal(aug(one, empty[:2], [np.zeros(0)] * 2, g)[0], one)  # grey images: no hue


def test_config_errors_and_presets():
    assert BoxAugmentConfig.from_config("detection").vflip
    chest = BoxAugmentConfig.from_config("detection_chest")
    assert not chest.hflip and not chest.vflip and chest.rotate == 0
    assert set(DETECTION_PRESETS) >= {"none", "detection", "detection_chest"}
    with pytest.raises(InvalidConfig, match="unknown augmentation option"):
        BoxAugmentConfig.from_config({"mixup": 0.2})
    with pytest.raises(InvalidConfig, match="min_visible"):
        BoxAugmentConfig.from_config({"min_visible": 2})
    with pytest.raises(InvalidConfig, match="crop"):
        BoxAugmentConfig.from_config({"crop": (0.5, 1.5)})
    with pytest.raises(ValueError, match="labels"):
        BoxAugment(BoxAugmentConfig())(torch.zeros(1, 1, 4, 4), [np.zeros((2, 4))], [np.zeros(1)],
                                       torch.Generator())
