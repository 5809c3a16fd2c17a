"""torchvision ImageNet architectures (never with downloaded weights) adapted to any input channels.

Each family gets a thin `Network` adapter that keeps torchvision's module names, so a torchvision
state dict saved locally loads as is (ResNet's ``fc.`` is read as ``classifier.``). The first
convolution is rebuilt for `in_channels` (initialised like torchvision does) and the head is
built for `num_classes` by torchvision itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import models as tvm

from medsight.models.networks.base import Network
from medsight.models.networks.registry import register_network


def kaiming_fan_out(weight: torch.Tensor) -> None:
    """torchvision's ResNet / EfficientNet conv initialisation."""
    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")


def rebuild_conv(conv: nn.Conv2d, in_channels: int, init: Callable[[torch.Tensor], None],
                 **overrides: object) -> nn.Conv2d:
    """A fresh Conv2d like `conv` but reading `in_channels` (and optional kernel/stride/padding)."""
    options = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                   bias=conv.bias is not None)
    options.update(overrides)
    new = nn.Conv2d(in_channels, conv.out_channels, **options)
    init(new.weight)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


class ResNetNetwork(Network):
    """torchvision ResNet split into stem + 4 stages (features) and ``fc`` (here ``classifier``)."""

    checkpoint_renames = {"fc.": "classifier."}

    def __init__(self, resnet: tvm.ResNet, in_channels: int) -> None:
        super().__init__(in_channels, resnet.fc.out_features)
        self.conv1, self.bn1, self.relu, self.maxpool = (
            resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        self.classifier = resnet.fc
        self.num_features = resnet.fc.in_features

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DenseNetNetwork(Network):
    """torchvision DenseNet: ``features`` then ReLU are the feature maps, ``classifier`` the head."""

    def __init__(self, densenet: tvm.DenseNet, in_channels: int) -> None:
        super().__init__(in_channels, densenet.classifier.out_features)
        self.features = densenet.features
        self.classifier = densenet.classifier
        self.num_features = densenet.classifier.in_features

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))


class EfficientNetNetwork(Network):
    """torchvision EfficientNet: ``features`` (ends in the 1x1 conv to 1280), ``classifier``."""

    def __init__(self, net: tvm.EfficientNet, in_channels: int) -> None:
        super().__init__(in_channels, net.classifier[-1].out_features)
        self.features = net.features
        self.classifier = net.classifier
        self.num_features = net.classifier[-1].in_features

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ConvNeXtNetwork(Network):
    """torchvision ConvNeXt; the head's channels-first LayerNorm2d becomes an equivalent LayerNorm
    on the pooled vector, so ``classifier`` reads (N, 768) like every other network."""

    def __init__(self, net: tvm.ConvNeXt, in_channels: int) -> None:
        norm, flatten, linear = net.classifier
        super().__init__(in_channels, linear.out_features)
        vector_norm = nn.LayerNorm(norm.normalized_shape, eps=norm.eps)
        vector_norm.load_state_dict(norm.state_dict())
        self.features = net.features
        self.classifier = nn.Sequential(vector_norm, flatten, linear)
        self.num_features = linear.in_features

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def build_resnet(builder: Callable[..., tvm.ResNet], in_channels: int, num_classes: int,
                 small_input_stem: bool = False) -> ResNetNetwork:
    """A torchvision ResNet for `in_channels`; `small_input_stem` = MedMNIST's 3x3/1 conv, no pool."""
    resnet = builder(weights=None, num_classes=num_classes)
    if small_input_stem:
        resnet.conv1 = rebuild_conv(resnet.conv1, in_channels, kaiming_fan_out,
                                    kernel_size=3, stride=1, padding=1)
        resnet.maxpool = nn.Identity()
    elif in_channels != 3:
        resnet.conv1 = rebuild_conv(resnet.conv1, in_channels, kaiming_fan_out)
    return ResNetNetwork(resnet, in_channels)


@register_network("resnet18", dims=2, default_size=224, min_size=1,
                  description="torchvision ResNet-18 (ImageNet stem 7x7/2 + max pool)")
def resnet18(in_channels: int = 1, num_classes: int = 2) -> Network:
    """ResNet-18 (He et al. 2016), 11.2 M parameters."""
    return build_resnet(tvm.resnet18, in_channels, num_classes)


@register_network("resnet34", dims=2, default_size=224, min_size=1,
                  description="torchvision ResNet-34 (ImageNet stem 7x7/2 + max pool)")
def resnet34(in_channels: int = 1, num_classes: int = 2) -> Network:
    """ResNet-34 (He et al. 2016)."""
    return build_resnet(tvm.resnet34, in_channels, num_classes)


@register_network("resnet50", dims=2, default_size=224, min_size=1,
                  description="torchvision ResNet-50, bottleneck blocks, 2048 features")
def resnet50(in_channels: int = 1, num_classes: int = 2) -> Network:
    """ResNet-50 (He et al. 2016)."""
    return build_resnet(tvm.resnet50, in_channels, num_classes)


@register_network("densenet121", dims=2, default_size=224, min_size=29,
                  description="torchvision DenseNet-121; three 2x2 transition pools need >= 29 px")
def densenet121(in_channels: int = 1, num_classes: int = 2, drop_rate: float = 0.0) -> Network:
    """DenseNet-121 (Huang et al. 2017); 28 px inputs reach 0 px at the last transition pool."""
    net = tvm.densenet121(weights=None, num_classes=num_classes, drop_rate=drop_rate)
    if in_channels != 3:
        net.features.conv0 = rebuild_conv(net.features.conv0, in_channels, nn.init.kaiming_normal_)
    return DenseNetNetwork(net, in_channels)


@register_network("efficientnet_b0", dims=2, default_size=224, min_size=1,
                  description="torchvision EfficientNet-B0 (MBConv, SiLU, squeeze-excitation)")
def efficientnet_b0(in_channels: int = 1, num_classes: int = 2, dropout: float = 0.2,
                    stochastic_depth_prob: float = 0.2) -> Network:
    """EfficientNet-B0 (Tan & Le 2019)."""
    net = tvm.efficientnet_b0(weights=None, num_classes=num_classes, dropout=dropout,
                              stochastic_depth_prob=stochastic_depth_prob)
    if in_channels != 3:
        net.features[0][0] = rebuild_conv(net.features[0][0], in_channels, kaiming_fan_out)
    return EfficientNetNetwork(net, in_channels)


@register_network("convnext_tiny", dims=2, default_size=224, min_size=32,
                  description="torchvision ConvNeXt-Tiny; 4x4/4 stem + three 2x2/2 downsamples")
def convnext_tiny(in_channels: int = 1, num_classes: int = 2,
                  stochastic_depth_prob: float = 0.1) -> Network:
    """ConvNeXt-Tiny (Liu et al. 2022); total stride 32 without padding, so inputs >= 32 px."""
    net = tvm.convnext_tiny(weights=None, num_classes=num_classes,
                            stochastic_depth_prob=stochastic_depth_prob)
    if in_channels != 3:
        net.features[0][0] = rebuild_conv(
            net.features[0][0], in_channels, lambda w: nn.init.trunc_normal_(w, std=0.02))
    return ConvNeXtNetwork(net, in_channels)
