"""MedMNIST's ResNets for small (28-64 px) images: 3x3 stride-1 first conv and no max pool.

As in the MedMNIST v2 reference code (Yang et al. 2023, experiments/MedMNIST2D/models.py): the
ImageNet stem (7x7 stride 2 conv + 3x3 stride 2 max pool) would shrink a 28 px image to 7 px
before the first residual stage; here the stages see 28 -> 28 -> 14 -> 7 -> 4 px.
"""

from __future__ import annotations

from torchvision import models as tvm

from medsight.models.networks.base import Network
from medsight.models.networks.registry import register_network
from medsight.models.networks.torchvision_nets import build_resnet


@register_network("resnet18_28", dims=2, default_size=28, min_size=1,
                  description="MedMNIST ResNet-18: 3x3/1 first conv, no max pool (28-64 px)")
def resnet18_28(in_channels: int = 1, num_classes: int = 2) -> Network:
    """ResNet-18 with MedMNIST's small-input stem."""
    return build_resnet(tvm.resnet18, in_channels, num_classes, small_input_stem=True)


@register_network("resnet50_28", dims=2, default_size=28, min_size=1,
                  description="MedMNIST ResNet-50: 3x3/1 first conv, no max pool (28-64 px)")
def resnet50_28(in_channels: int = 1, num_classes: int = 2) -> Network:
    """ResNet-50 with MedMNIST's small-input stem."""
    return build_resnet(tvm.resnet50, in_channels, num_classes, small_input_stem=True)
