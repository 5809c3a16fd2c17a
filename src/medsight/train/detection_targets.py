"""CenterNet's training targets for a batch of boxes.

`centernet_targets` renders, on the stride-4 output
grid, one elliptical Gaussian per box in its class's heatmap (peak 1 at the centre cell; sigma
= ``alpha`` * size / 6 as TTFNet, Liu et al. 2019), the box size in cells and the sub-cell
centre offset at the centre cell. Boxes are (M, 4) xyxy in input pixel edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BoxList = list[torch.Tensor]


@dataclass
class CenterNetTargets:
    """Target maps of a batch on the (h, w) output grid: ``heat`` (N, C, h, w) in [0, 1], and at
    each box's centre cell (``mask`` (N, h, w) True) ``size`` and ``offset`` (N, 2, h, w)."""

    heat: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor
    mask: torch.Tensor


def centernet_targets(boxes: BoxList, labels: BoxList, num_classes: int, grid: tuple[int, int],
                      stride: int, alpha: float = 0.54) -> CenterNetTargets:
    """Render the CenterNet targets of a batch (see the module docstring)."""
    n, (h, w) = len(boxes), grid
    heat = torch.zeros(n, num_classes, h, w)
    size = torch.zeros(n, 2, h, w)
    offset = torch.zeros(n, 2, h, w)
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    for i in range(n):
        b = boxes[i].float().reshape(-1, 4)
        if len(b) == 0:
            continue
        lab = labels[i].long().reshape(-1)
        bw, bh = (b[:, 2] - b[:, 0]) / stride, (b[:, 3] - b[:, 1]) / stride
        u = (b[:, 0] + b[:, 2]) / (2 * stride) - 0.5  # centre in cell-index units
        v = (b[:, 1] + b[:, 3]) / (2 * stride) - 0.5
        ix = u.round().clamp(0, w - 1)
        iy = v.round().clamp(0, h - 1)
        sx = (alpha * bw / 6).clamp(min=0.8).view(-1, 1, 1)
        sy = (alpha * bh / 6).clamp(min=0.8).view(-1, 1, 1)
        g = torch.exp(-((xs - ix.view(-1, 1, 1)) ** 2) / (2 * sx**2)
                      - ((ys - iy.view(-1, 1, 1)) ** 2) / (2 * sy**2))
        for cls in lab.unique():
            sel = lab == cls
            heat[i, cls] = torch.maximum(heat[i, cls], g[sel].amax(0))
        # larger boxes first, so a small box sharing a centre cell keeps its own size target
        order = torch.argsort(bw * bh, descending=True)
        cx, cy = ix[order].long(), iy[order].long()
        size[i, 0, cy, cx], size[i, 1, cy, cx] = bw[order], bh[order]
        offset[i, 0, cy, cx], offset[i, 1, cy, cx] = (u - ix)[order], (v - iy)[order]
        mask[i, cy, cx] = True
        heat[i, lab[order], cy, cx] = 1.0
    return CenterNetTargets(heat, size, offset, mask)
