"""A 3D ResNet-18 for small volumes: torchvision's r3d_18 with a small-input stem.

torchvision.models.video.r3d_18 (Tran et al. 2018: BasicBlock with 3x3x3 convolutions, stages
64-128-256-512, stride 2 in every axis at stages 2-4) is built without weights; its video stem
(3x7x7 conv, stride 1x2x2) is replaced by a 3x3x3 stride-1 conv, the 3D analogue of the MedMNIST
2D stem, so a 28^3 volume gives 28 -> 14 -> 7 -> 4 voxel maps. This is the architecture of
MedMNIST's "3D" ResNet-18 baseline (its 2D ResNet-18 with every kernel inflated to 3D).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import video

from medsight.models.networks.base import Network
from medsight.models.networks.registry import register_network


class ResNet3dNetwork(Network):
    """torchvision VideoResNet as a `Network`: ``stem`` + 4 stages, ``fc`` read as ``classifier``."""

    checkpoint_renames = {"fc.": "classifier."}

    def __init__(self, net: video.VideoResNet, in_channels: int) -> None:
        super().__init__(in_channels, net.fc.out_features)
        self.stem = net.stem
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)
        self.classifier = net.fc
        self.num_features = net.fc.in_features

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


@register_network("resnet18_3d", dims=3, default_size=28, min_size=1,
                  description="3D ResNet-18 (torchvision r3d_18, 3x3x3/1 stem) for 28-64^3 volumes")
def resnet18_3d(in_channels: int = 1, num_classes: int = 2) -> Network:
    """r3d_18 without weights, stem conv 3x3x3 stride 1 for `in_channels`, head for `num_classes`."""
    net = video.r3d_18(weights=None, num_classes=num_classes)
    stem = nn.Conv3d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
    net.stem[0] = stem
    return ResNet3dNetwork(net, in_channels)
