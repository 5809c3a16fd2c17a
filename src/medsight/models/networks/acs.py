"""ACS convolutions: run a 2D network on 3D volumes by splitting its kernels across three views.

Yang et al., "Reinventing 2D Convolutions for 3D Images" (IEEE JBHI 2021), the "ACS" option of the
MedMNIST 3D benchmarks. Each 2D kernel bank (O, C, k, k) is kept as is (so 2D checkpoints load
unchanged) and its O output channels are split into three groups (sizes as equal as possible,
the first groups one larger), each applied as a 3D convolution over (D, H, W):

- axial group:    kernel (1, k, k), a 2D conv in every H x W plane;
- coronal group:  kernel (k, 1, k), a 2D conv in every D x W plane;
- sagittal group: kernel (k, k, 1), a 2D conv in every D x H plane;

and the three outputs are concatenated along channels. Strides apply to all three axes, so every
group yields the same output shape. ``mode="2.5d"`` puts all channels in the axial group: MedMNIST's
"2.5D" baseline (Conv2_5d: each 2D kernel applied slice by slice, (1, k, k), with 3D strides and
pooling; slices meet only in the strided subsampling and the final global average pool).
Conversion also turns BatchNorm2d, pools and Dropout2d into their 3D counterparts.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from medsight.errors import InvalidConfig
from medsight.models.networks.base import Network
from medsight.models.networks.registry import register_network
from medsight.models.networks.resnet_small import resnet18_28

Mode = Literal["acs", "2.5d"]


def acs_split(out_channels: int) -> tuple[int, int, int]:
    """Output channels per (axial, coronal, sagittal) view: equal thirds, remainder to the first."""
    third, rest = divmod(out_channels, 3)
    return (third + (rest >= 1), third + (rest >= 2), third)


def _same(value: int | tuple[int, ...], what: str, conv: nn.Module) -> int:
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise InvalidConfig(f"ACS conversion needs equal {what} on both axes, got {values} in {conv}")
    return int(values[0])


class ACSConv(nn.Module):
    """A 2D kernel bank (O, C, k, k) applied to (N, C, D, H, W) volumes along three views.

    `split` gives the output channels of the (axial, coronal, sagittal) groups; it sums to O.
    Zero padding of ``p`` along the two in-plane axes of a view is kept; along the view's
    collapsed axis the input is padded by ``p - dilation*(k-1)/2`` so that all three groups give
    the same output size as a k x k x k convolution would.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = True,
                 split: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = (
            kernel_size, stride, padding, dilation)
        self.split = tuple(split) if split is not None else acs_split(out_channels)
        if sum(self.split) != out_channels or min(self.split) < 0:
            raise InvalidConfig(f"ACS split {self.split} must be >= 0 and sum to {out_channels}")
        if dilation * (kernel_size - 1) % 2:
            raise InvalidConfig(f"ACS conversion needs odd kernels, got kernel_size={kernel_size}")
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.axis_pad = padding - dilation * (kernel_size - 1) // 2

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, split: tuple[int, int, int] | None = None) -> ACSConv:
        """An ACSConv with the same configuration and (copied) weights as `conv`."""
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise InvalidConfig(f"ACS conversion supports groups=1 zero-padded convs only: {conv}")
        new = cls(conv.in_channels, conv.out_channels, _same(conv.kernel_size, "kernel", conv),
                  _same(conv.stride, "stride", conv), _same(conv.padding, "padding", conv),
                  _same(conv.dilation, "dilation", conv), conv.bias is not None, split)
        with torch.no_grad():
            new.weight.copy_(conv.weight)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, start = [], 0
        for axis, count in enumerate(self.split):
            if count == 0:
                continue
            kernels = self.weight[start:start + count].unsqueeze(2 + axis)
            start += count
            padding = [self.padding] * 3
            padding[axis] = 0
            view = x
            if self.axis_pad != 0:
                pads = [0] * 6
                pads[2 * (2 - axis)] = pads[2 * (2 - axis) + 1] = self.axis_pad
                view = F.pad(x, pads)
            outputs.append(F.conv3d(view, kernels, None, self.stride, tuple(padding),
                                    self.dilation))
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, split={self.split}")


def _to_3d(child: nn.Module, mode: Mode) -> nn.Module | None:
    """The 3D counterpart of one 2D leaf module, or None when it works on any dimension."""
    if isinstance(child, nn.Conv2d):
        split = acs_split(child.out_channels) if mode == "acs" else (child.out_channels, 0, 0)
        return ACSConv.from_conv2d(child, split)
    if isinstance(child, nn.BatchNorm2d):
        bn = nn.BatchNorm3d(child.num_features, child.eps, child.momentum, child.affine,
                            child.track_running_stats)
        bn.load_state_dict(child.state_dict())
        return bn
    if isinstance(child, nn.MaxPool2d):
        return nn.MaxPool3d(_same(child.kernel_size, "kernel", child),
                            _same(child.stride, "stride", child),
                            _same(child.padding, "padding", child),
                            _same(child.dilation, "dilation", child), ceil_mode=child.ceil_mode)
    if isinstance(child, nn.AvgPool2d):
        return nn.AvgPool3d(_same(child.kernel_size, "kernel", child),
                            _same(child.stride, "stride", child),
                            _same(child.padding, "padding", child), child.ceil_mode,
                            child.count_include_pad)
    if isinstance(child, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        size = _same(child.output_size, "output size", child)
        three_d = nn.AdaptiveAvgPool3d if isinstance(child, nn.AdaptiveAvgPool2d) else (
            nn.AdaptiveMaxPool3d)
        return three_d(size)
    if isinstance(child, nn.Dropout2d):
        return nn.Dropout3d(child.p, child.inplace)
    if "2d" in type(child).__name__.lower() and not list(child.children()):
        raise InvalidConfig(f"no 3D counterpart known for {type(child).__name__}")
    return None


def convert_2d_to_3d(module: nn.Module, mode: Mode = "acs") -> nn.Module:
    """Convert a 2D network in place to work on volumes (ACS or 2.5D convs); returns it."""
    if mode not in ("acs", "2.5d"):
        raise InvalidConfig(f"conversion mode must be 'acs' or '2.5d', got {mode!r}")
    for name, child in module.named_children():
        replacement = _to_3d(child, mode)
        if replacement is not None:
            setattr(module, name, replacement)
        else:
            convert_2d_to_3d(child, mode)
    if isinstance(module, Network):
        module.dims = 3
    return module


@register_network("resnet18_acs", dims=3, default_size=28, min_size=1,
                  description="resnet18_28 with ACS convolutions (2D kernels split over 3 views)")
def resnet18_acs(in_channels: int = 1, num_classes: int = 2) -> Network:
    """MedMNIST's ACS ResNet-18: `resnet18_28` converted with `convert_2d_to_3d(mode="acs")`.

    Its state dict has exactly resnet18_28's keys and shapes, so 2D checkpoints load directly.
    """
    return convert_2d_to_3d(resnet18_28(in_channels=in_channels, num_classes=num_classes), "acs")


@register_network("resnet18_25d", dims=3, default_size=28, min_size=1,
                  description="resnet18_28 applied slice-wise (1xkxk kernels, 3D pooling): 2.5D")
def resnet18_25d(in_channels: int = 1, num_classes: int = 2) -> Network:
    """MedMNIST's 2.5D ResNet-18: `resnet18_28` converted with ``mode="2.5d"``."""
    return convert_2d_to_3d(resnet18_28(in_channels=in_channels, num_classes=num_classes), "2.5d")
