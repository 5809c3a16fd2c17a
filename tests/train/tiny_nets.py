"""Test helpers: tiny registered networks and small stratified subsets (seconds on 2 CPU cores).

The networks follow the registry's `Network` protocol (forward_features / pool / classifier) with
a few thousand parameters, and include dropout so RNG-state handling is exercised.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medsight.errors import InvalidConfig
from medsight.models.networks import Network, network_info, register_network


class TinyCNN(Network):
    """conv-BN-ReLU-pool x2 then dropout + linear; 2D or 3D."""

    def __init__(self, in_channels: int, num_classes: int, dims: int, width: int = 8):
        super().__init__(in_channels, num_classes)
        conv, bn, pool = (
            (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2
            else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
        )
        self.features = nn.Sequential(
            conv(in_channels, width, 3, padding=1), bn(width), nn.ReLU(), pool(2),
            conv(width, 2 * width, 3, padding=1), bn(2 * width), nn.ReLU(),
        )
        self.num_features = 2 * width
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * width, num_classes))

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def register_tiny_networks() -> None:
    """Register ``tiny_cnn_test`` (2D) and ``tiny_cnn3d_test`` (3D) once per process."""
    try:
        network_info("tiny_cnn_test")
    except InvalidConfig:
        @register_network("tiny_cnn_test", dims=2, default_size=28, min_size=4,
                          description="test-only tiny CNN")
        def tiny_cnn_test(in_channels: int = 1, num_classes: int = 2, width: int = 8) -> Network:
            return TinyCNN(in_channels, num_classes, 2, width)

        @register_network("tiny_cnn3d_test", dims=3, default_size=28, min_size=4,
                          description="test-only tiny 3D CNN")
        def tiny_cnn3d_test(in_channels: int = 1, num_classes: int = 2, width: int = 4) -> Network:
            return TinyCNN(in_channels, num_classes, 3, width)


register_tiny_networks()


def subset(dataset, n: int, seed: int = 0):
    """A stratified random subset of about `n` labelled records (every class kept)."""
    labels = dataset.labels
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    classes = np.unique(labels)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        take = max(2, int(round(n * len(idx) / len(labels))))
        picked += list(rng.choice(idx, min(take, len(idx)), replace=False))
    return dataset.subset(sorted(picked))
