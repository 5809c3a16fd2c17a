"""Heatmaps find phantom lesions: a tiny CNN trained briefly on phantoms (each lesion image with its
healthy twin) gives CAM and occlusion maps that peak inside the recorded lesion boxes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from medsight.data.sources.phantom import phantom_image  # noqa: E402
from medsight.explain import class_activation_map, occlusion_map, upsample  # noqa: E402

SIZE = 32


def _pairs(indices: range) -> tuple[np.ndarray, np.ndarray, list[list[list[float]]]]:
    xs, ys, boxes = [], [], []
    for i in indices:
        image, label, box = phantom_image(0, i, SIZE)
        if not label:
            continue
        twin, _, _ = phantom_image(0, i, SIZE, draw_lesions=False)
        xs += [image.pixels, twin.pixels]
        ys += [1, 0]
        boxes += [box, []]
    return ((np.stack(xs) / 255.0 - 0.4) / 0.25).astype(np.float32), np.array(ys), boxes


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    x, y, _ = _pairs(range(600))
    net = nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(10):
        for b in torch.randperm(len(yt)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[b]), yt[b]).backward()
            opt.step()
    return net.eval()


def _peak_in_box(heat: np.ndarray, boxes: list[list[float]], tol: float) -> bool:
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    return any(b[0] - tol <= c + 0.5 <= b[2] + tol and b[1] - tol <= r + 0.5 <= b[3] + tol
               for b in boxes)


def _box_mask(boxes: list[list[float]]) -> np.ndarray:
    centre = np.arange(SIZE) + 0.5
    mask = np.zeros((SIZE, SIZE), bool)
    for x0, y0, x1, y1 in boxes:
        mask |= ((centre[:, None] >= y0) & (centre[:, None] <= y1)
                 & (centre[None, :] >= x0) & (centre[None, :] <= x1))
    return mask


def test_cam_and_occlusion_peak_inside_lesion_boxes(trained: nn.Module) -> None:
    x, y, boxes = _pairs(range(600, 660))
    weights = trained[-1].weight.detach().numpy()

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(trained(torch.from_numpy(batch)), 1).numpy()

    found = forward(x)[:, 1] > 0.5
    cam_ratio, occ_hits, n = [], 0, 0
    for xi, yi, bi, fi in zip(x, y, boxes, found, strict=True):
        if not (yi and fi):
            continue
        with torch.no_grad():
            maps = trained[:7](torch.from_numpy(xi[None]))[0].numpy()
        cam = upsample(class_activation_map(maps, weights, 1), (SIZE, SIZE))
        inside = _box_mask(bi)
        cam_ratio.append(cam[inside].mean() / max(cam[~inside].mean(), 1e-9))
        occ_hits += _peak_in_box(occlusion_map(forward, xi, 1), bi, tol=0.5)
        n += 1
    assert n >= 10
    # a lesion box covers ~2 % of the image: chance would put few peaks inside
    assert occ_hits >= 0.75 * n, (occ_hits, n)
    # CAM (on a grid half as fine) is blurrier: most of its heat sits on the lesions
    assert np.median(cam_ratio) > 2.0, cam_ratio


def test_occlusion_is_zero_when_nothing_matters() -> None:
    heat = occlusion_map(lambda b: np.full((len(b), 2), 0.5), np.ones((1, 8, 8), np.float32), 1)
    assert heat.shape == (8, 8) and not heat.any()


def test_cam_of_a_single_active_feature() -> None:
    maps = np.zeros((2, 4, 4))
    maps[0, 1, 3] = 5.0
    maps[1] = 1.0
    cam = class_activation_map(maps, np.array([[0.0, 1.0], [1.0, 1.0]]), 1)
    assert cam[1, 3] == 1.0 and cam.sum() == 1.0
