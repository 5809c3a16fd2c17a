"""Anchor-free detectors for a CPU: CenterNet-style heads on a small residual backbone + FPN neck.

A `DetectorNetwork` is a registry `Network` whose ``forward`` gives raw head maps and whose
``detect(x, k)`` gives the top-``k`` boxes ``(N, k, 4)`` xyxy in input pixel edges, scores
``(N, k)`` (0 for padding) and labels ``(N, k)`` int64, sorted by score. CenterNet (Zhou et al.
2019, "Objects as Points") predicts per class a centre heatmap at output stride 4, plus the box
size and the sub-cell centre offset; decoding is a 3x3 max-pool peak test and a top-k, so the
whole detector (decoding included) exports to ONNX without NonMaxSuppression. The per-class
heatmap head is the ``classifier`` sub-module, so a checkpoint trained on other classes loads
with the heatmap head left at its initialisation (`weights.load_weights`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from medsight.errors import InvalidConfig
from medsight.models.networks.base import Network
from medsight.models.networks.registry import register_network
from medsight.models.networks.weights import adapt_input_channels, read_state_dict

#: CenterNet's prior on the heatmap logits: sigmoid(-2.19) = 0.1 at the start of training
HEATMAP_PRIOR = -2.19


class DetectorNetwork(Network):
    """Base class of detectors: ``detect(x, k)`` -> (boxes, scores, labels); see module docstring.

    ``loss_kind`` names the training objective (``"centernet"`` or ``"torchvision"``) that
    `medsight.train.detection_losses` applies.
    """

    loss_kind = ""

    def detect(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Block(nn.Module):
    """A ResNet basic block (two 3x3 convs, projection shortcut when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.short(x))


class StagedBackbone(nn.Module):
    """A ``stem`` then ``stages`` (strides 4, 8, 16, 32); ``forward`` gives every stage's maps."""

    stem: nn.Module
    stages: nn.ModuleList

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class SmallBackbone(StagedBackbone):
    """Stem (stride 2) + four residual stages at strides 4, 8, 16, 32."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], blocks: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(in_channels, widths[0], 2), _conv_bn(widths[0], widths[0]))
        stages, cin = [], widths[0]
        for cout, n in zip(widths[1:], blocks, strict=True):
            stages.append(nn.Sequential(_Block(cin, cout, 2), *[_Block(cout, cout, 1)
                                                                for _ in range(n - 1)]))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.channels = list(widths[1:])


class ResNetBackbone(StagedBackbone):
    """A torchvision ResNet trunk (no weights downloaded) giving its four stages' maps."""

    def __init__(self, in_channels: int, arch: str, weights: str | None = None):
        super().__init__()
        net = getattr(tvm, arch)(weights=None)
        if weights is not None:
            load_trunk_weights(net, weights)
        if in_channels != 3:  # grey: the RGB kernels summed (see weights.adapt_input_channels)
            conv = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            with torch.no_grad():
                conv.weight.copy_(adapt_input_channels(net.conv1.weight, in_channels))
            net.conv1 = conv
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = [_stage_channels(s) for s in self.stages]


def load_trunk_weights(net: nn.Module, weights: str) -> None:
    """A local torchvision classification checkpoint into `net`, its ``fc`` head ignored."""
    state = {k: v for k, v in read_state_dict(weights).items() if not k.startswith("fc.")}
    own = {k for k in net.state_dict() if not k.startswith("fc.")}
    missing = sorted(own - set(state))
    if missing:
        raise InvalidConfig(f"backbone weights {weights} lack {len(missing)} tensors of the trunk "
                            f"(first: {missing[:3]}); give a torchvision ResNet checkpoint")
    net.load_state_dict(state, strict=False)


def _stage_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)


class FPNNeck(nn.Module):
    """Top-down feature pyramid (1x1 laterals, nearest upsampling, sum) to the stride-4 map."""

    def __init__(self, channels: list[int], width: int):
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in channels])
        self.smooth = _conv_bn(width, width)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](maps[-1])
        for lateral, m in zip(reversed(self.lateral[:-1]), reversed(maps[:-1]), strict=True):
            x = lateral(m) + F.interpolate(x, size=m.shape[-2:], mode="nearest")
        return self.smooth(x)


def _output(width: int, out: int, bias: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(width, out, 1)
    nn.init.constant_(conv.bias, bias)
    return conv


class CenterNet(DetectorNetwork):
    """Backbone -> FPN neck at stride 4 -> one shared 3x3 conv -> 1x1 heatmap (``classifier``),
    size and offset outputs (one shared head conv instead of three: a quarter less compute).

    ``forward(x)`` returns ``(heatmap_logits (N, C, h, w), size (N, 2, h, w), offset (N, 2, h, w))``
    with size = box (width, height) in output cells and offset the centre's sub-cell shift.
    """

    loss_kind = "centernet"
    stride = 4

    def __init__(self, backbone: nn.Module, in_channels: int, num_classes: int, width: int):
        super().__init__(in_channels, num_classes)
        self.backbone = backbone
        self.neck = FPNNeck(backbone.channels, width)
        self.head = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(inplace=True))
        self.classifier = _output(width, num_classes, HEATMAP_PRIOR)
        self.size_head = _output(width, 2)
        self.offset_head = _output(width, 2)
        self.num_features = width

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.backbone(x)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.forward_features(x)
        return self.classifier(maps), self.size_head(maps), self.offset_head(maps)

    def detect(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heat, size, offset = self(x)
        return centernet_decode(heat, size, offset, self.stride, k, x.shape[-2:])


def centernet_decode(
    heat_logits: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, stride: int, k: int,
    input_hw: tuple[int, int] | torch.Size,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks of the heatmap (3x3 max-pool test) -> top-`k` boxes, scores and labels.

    A cell ``(i, j)`` is centred at input edge coordinate ``((j + 0.5) * stride, (i + 0.5) *
    stride)``; the box centre is that plus ``offset * stride`` and its size ``size * stride``;
    corners are clipped to the input. Fewer than `k` cells: padded with score-0 boxes.
    """
    n, c, h, w = heat_logits.shape
    heat = torch.sigmoid(heat_logits.float())
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
    flat = peaks.reshape(n, c * h * w)
    kk = min(k, c * h * w)
    scores, index = torch.topk(flat, kk, dim=1)
    labels = torch.div(index, h * w, rounding_mode="floor")
    cell = index - labels * (h * w)
    ys = torch.div(cell, w, rounding_mode="floor")
    xs = cell - ys * w
    gather = cell.unsqueeze(1).expand(n, 2, kk)
    wh = F.relu(torch.gather(size.float().reshape(n, 2, h * w), 2, gather)) * stride
    off = torch.gather(offset.float().reshape(n, 2, h * w), 2, gather)
    cx = (xs.to(heat.dtype) + 0.5 + off[:, 0]) * stride
    cy = (ys.to(heat.dtype) + 0.5 + off[:, 1]) * stride
    in_h, in_w = float(input_hw[0]), float(input_hw[1])
    boxes = torch.stack([
        (cx - wh[:, 0] / 2).clamp(0, in_w), (cy - wh[:, 1] / 2).clamp(0, in_h),
        (cx + wh[:, 0] / 2).clamp(0, in_w), (cy + wh[:, 1] / 2).clamp(0, in_h),
    ], dim=2)
    if kk < k:
        boxes = F.pad(boxes, (0, 0, 0, k - kk))
        scores = F.pad(scores, (0, k - kk))
        labels = F.pad(labels, (0, k - kk))
    return boxes, scores, labels


def _widths(width: int, base: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(width, bool) or not isinstance(width, int) or width < 4:
        raise InvalidConfig(f"centernet width must be an integer >= 4, got {width!r}")
    return tuple(max(4, int(math.ceil(b * width / 32))) for b in base)


@register_network("centernet_small", dims=2, default_size=320, min_size=32, task="detection",
                  description="detector: CenterNet heads (stride 4) on a small ResNet + FPN (CPU)")
def centernet_small(in_channels: int = 3, num_classes: int = 2, width: int = 32,
                    blocks: tuple[int, ...] = (1, 2, 2, 1), neck: int = 64) -> Network:
    """CenterNet on a 4-stage residual backbone of widths (w, 1.5w, 3w, 5w, 8w) at width w."""
    widths = _widths(width, (32, 48, 96, 160, 256))
    if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
        raise InvalidConfig(f"centernet blocks must be 4 positive counts, got {blocks!r}")
    backbone = SmallBackbone(in_channels, widths, tuple(int(b) for b in blocks))
    return CenterNet(backbone, in_channels, num_classes, int(neck))


@register_network("centernet_resnet18", dims=2, default_size=512, min_size=32, task="detection",
                  description="detector: CenterNet heads (stride 4) on ResNet-18 + FPN")
def centernet_resnet18(in_channels: int = 3, num_classes: int = 2, neck: int = 64,
                       backbone_weights: str | None = None) -> Network:
    """CenterNet on torchvision's ResNet-18 trunk; `backbone_weights`: a local torchvision
    ResNet-18 checkpoint (e.g. ImageNet) for the trunk (never downloaded)."""
    backbone = ResNetBackbone(in_channels, "resnet18", backbone_weights)
    return CenterNet(backbone, in_channels, num_classes, int(neck))
