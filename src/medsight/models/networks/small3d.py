"""A small VGG-style 3D CNN for 28-64^3 volumes that trains in minutes on a CPU.

A 3D ResNet-18 on a 28^3 volume costs about 35 GFLOP per forward pass (every 2D kernel inflated
to 3x3x3, no early downsampling; its ACS variant about 12): hours per epoch on a few CPU cores.
`cnn3d_small` keeps the full resolution for one cheap layer only and then halves it three times:

    conv(C->w) @28^3 | conv(w->2w, /2) conv(2w->2w) @14^3 | conv(2w->4w, /2) conv(4w->4w) @7^3
    | conv(4w->8w, /2) conv(8w->8w) @4^3 | global average pool | dropout | linear(8w->classes)

every conv 3x3x3 + batch norm + ReLU. With the default width w=8 that is 0.22 M parameters and
about 0.12 GFLOP per 28^3 forward pass: an AdrenalMNIST3D epoch (1188 volumes) takes seconds to
tens of seconds on two cores. Binary masks and small organs need shape, not depth, which is
what the full-resolution first layer and three scales give.
"""

from __future__ import annotations

import torch
from torch import nn

from medsight.errors import InvalidConfig
from medsight.models.networks.base import Network
from medsight.models.networks.registry import register_network


def _conv(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    return [nn.Conv3d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]


class SmallCNN3d(Network):
    """Seven 3x3x3 conv-BN-ReLU layers at four scales (see module doc), global pool, linear head."""

    def __init__(self, in_channels: int, num_classes: int, width: int, dropout: float) -> None:
        super().__init__(in_channels, num_classes)
        w = width
        self.features = nn.Sequential(
            *_conv(in_channels, w, 1),
            *_conv(w, 2 * w, 2), *_conv(2 * w, 2 * w, 1),
            *_conv(2 * w, 4 * w, 2), *_conv(4 * w, 4 * w, 1),
            *_conv(4 * w, 8 * w, 2), *_conv(8 * w, 8 * w, 1),
        )
        self.num_features = 8 * w
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(8 * w, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_network("cnn3d_small", dims=3, default_size=28, min_size=8,
                  description="small VGG-style 3D CNN (7 conv, widths w..8w, w=8: 0.22 M params), "
                              "CPU-friendly for 28-64^3 volumes")
def cnn3d_small(in_channels: int = 1, num_classes: int = 2, width: int = 8,
                dropout: float = 0.2) -> Network:
    """The small 3D CNN; `width` is the first layer's channels (doubling at each scale)."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InvalidConfig(f"cnn3d_small: width must be a positive integer, got {width!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise InvalidConfig(f"cnn3d_small: dropout must lie in [0, 1), got {dropout!r}")
    return SmallCNN3d(in_channels, num_classes, width, float(dropout))
