"""AlexNet (Krizhevsky et al. 2012) as specified, and a small-input variant for 28-64 px images."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medsight.models.networks.base import Network
from medsight.models.networks.registry import register_network


class _OnnxLRN(torch.autograd.Function):
    """Forward-only LRN that exports as ONNX's native ``LRN`` op (used only inside ONNX export).

    torch's functional LRN traces into view/pad/avg_pool3d with runtime sizes, which erases the
    static spatial shape that the exporter needs for AlexNet's adaptive pool; ONNX LRN computes
    the same ``x / (k + alpha/size * sum of squares over c-2..c+2)^beta`` for odd sizes.
    """

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):  # noqa: ANN001, ANN205 (autograd signature)
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size, alpha, beta, k):  # noqa: ANN001, ANN205 (exporter signature)
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LocalResponseNorm(nn.LocalResponseNorm):
    """torch's LocalResponseNorm, exported to ONNX as the native LRN op."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return _OnnxLRN.apply(x, self.size, self.alpha, self.beta, self.k)
        return super().forward(x)


def _lrn() -> nn.LocalResponseNorm:
    """The paper's local response normalisation: size 5, alpha 1e-4, beta 0.75, k 2."""
    return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


class AlexNet(Network):
    """Five convolutions with LRN, a fixed `grid` x `grid` adaptive pool, three fully connected layers.

    The classifier is Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear; its input is the flattened
    256 x grid x grid pooled maps, so ``global_pool`` is False (CAM needs Grad-CAM here).
    """

    global_pool = False

    def __init__(self, in_channels: int, num_classes: int, features: nn.Sequential, grid: int,
                 hidden: int, dropout: float) -> None:
        super().__init__(in_channels, num_classes)
        self.features = features
        self.grid = grid
        self.num_features = 256
        self.classifier = nn.Sequential(
            nn.Linear(256 * grid * grid, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """Adaptive average pool to grid x grid, flattened to (N, 256 * grid * grid)."""
        if torch.onnx.is_in_onnx_export():
            pooled = _adaptive_avg_pool_as_matmul(maps, self.grid)
        else:
            pooled = F.adaptive_avg_pool2d(maps, self.grid)
        return torch.flatten(pooled, 1)


def _pool_matrix(size: int, bins: int) -> torch.Tensor:
    """(bins, size) averaging matrix with adaptive pooling's bins [floor(i*s/b), ceil((i+1)*s/b))."""
    matrix = torch.zeros(bins, size)
    for i in range(bins):
        start, stop = (i * size) // bins, -(-((i + 1) * size) // bins)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


def _adaptive_avg_pool_as_matmul(maps: torch.Tensor, bins: int) -> torch.Tensor:
    """adaptive_avg_pool2d written as two constant matrix products, for ONNX export.

    The exporter only handles adaptive pools whose output divides the input (28 px -> 3x3 works,
    64 px or AlexNet's 63 px -> 6x6 do not); the map size is fixed at export, so the bins become
    constants and any size exports. Equal to adaptive_avg_pool2d up to float rounding.
    """
    height, width = int(maps.shape[-2]), int(maps.shape[-1])
    rows = _pool_matrix(height, bins).to(maps)
    cols = _pool_matrix(width, bins).to(maps)
    return torch.matmul(torch.matmul(rows, maps), cols.t())


@register_network(
    "alexnet", dims=2, default_size=224, min_size=63,
    description="AlexNet as specified (11x11/4 conv, LRN, 9216-4096-4096 FC); inputs >= 63 px",
)
def alexnet(in_channels: int = 1, num_classes: int = 2, dropout: float = 0.5) -> Network:
    """The original AlexNet: conv 11/4 -> pool -> LRN -> conv 5 -> pool -> LRN -> 3 x conv 3 -> pool.

    63 px is the smallest input whose last feature map still has one pixel.
    """
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        _lrn(),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        _lrn(),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    return AlexNet(in_channels, num_classes, features, grid=6, hidden=4096, dropout=dropout)


@register_network(
    "alexnet_small", dims=2, default_size=28, min_size=8,
    description="AlexNet for 28-64 px (MedMNIST): 5x5/3x3 stride-1 convs, 2x2 pools, 1024-wide FC",
)
def alexnet_small(in_channels: int = 1, num_classes: int = 2, dropout: float = 0.5) -> Network:
    """AlexNet's shape (5 convs with ReLU, LRN after the first two pools, 3 FC layers, dropout 0.5)
    sized for 28-64 px images.

    Differences from `alexnet` and why:

    - conv1 is 5x5 with stride 1 and padding 2 instead of 11x11 with stride 4: a stride-4 11x11
      kernel turns a 28 px image into 5 px before the first pool and discards the fine texture
      that small medical images carry;
    - the three max pools are 2x2 with stride 2 instead of overlapping 3x3 with stride 2, so
      28 px gives 14 -> 7 -> 3 px maps instead of failing (AlexNet needs >= 63 px); 8 px is the
      smallest input;
    - the adaptive pool is 3x3 (what 28 px produces) instead of 6x6, and the fully connected
      layers are 1024 wide instead of 4096: 2304-1024-1024 rather than 9216-4096-4096, about
      5.9 M instead of 57 M parameters, in proportion to datasets of a few hundred to thousands
      of images.

    conv2-conv5 keep AlexNet's kernels and widths (5x5 -> 192, 3x3 -> 384, 256, 256).
    """
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=5, stride=1, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2, stride=2),
        _lrn(),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2, stride=2),
        _lrn(),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2, stride=2),
    )
    return AlexNet(in_channels, num_classes, features, grid=3, hidden=1024, dropout=dropout)
