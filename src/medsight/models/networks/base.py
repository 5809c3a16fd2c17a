"""The `Network` base class every registered network derives from, and CNN embeddings.

A network splits into three parts so that training, embeddings, Grad-CAM and ONNX export all use
the same calls: ``forward_features`` (input -> last feature maps), ``pool`` (maps -> vector) and
the ``classifier`` sub-module (vector -> logits). See `registry.py` for the full protocol.
"""

from __future__ import annotations

import torch
from torch import nn

from medsight.errors import InvalidConfig


class Network(nn.Module):
    """Base class: subclasses build their layers, set ``classifier`` and implement `extract_features`.

    Registry metadata (``name``, ``dims``, ``min_size``) is stamped on each instance by the
    `register_network` decorator; ``num_features`` is the channel count of the last feature maps.
    """

    name: str = "network"
    dims: int = 2
    min_size: int = 1
    #: True when `pool` is a global average pool, so the last feature maps feed a linear head
    #: directly (CAM-able); False for AlexNet, whose classifier reads a fixed 6x6 grid.
    global_pool: bool = True
    #: Prefix renames applied to foreign checkpoints before loading (e.g. torchvision's ``fc.``).
    checkpoint_renames: dict[str, str] = {}

    #: pooled vector -> logits; every subclass assigns it in its constructor
    classifier: nn.Module

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_features = 0

    # -- what subclasses implement ---------------------------------------------------------
    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input batch -> last feature maps; called by `forward_features` after the input check."""
        raise NotImplementedError

    # -- the protocol ----------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise InvalidConfig unless `x` is (N, in_channels, *spatial) with every edge >= min_size."""
        expected = 2 + self.dims
        layout = "(N, C, H, W)" if self.dims == 2 else "(N, C, D, H, W)"
        if x.dim() != expected or x.shape[1] != self.in_channels:
            raise InvalidConfig(
                f"network {self.name} expects a {layout} batch with C={self.in_channels}, "
                f"got shape {tuple(x.shape)}"
            )
        spatial = tuple(int(s) for s in x.shape[2:])
        if min(spatial) < self.min_size:
            raise InvalidConfig(
                f"network {self.name} needs inputs of at least {self.min_size} px per spatial axis, "
                f"got {spatial}; resize or pad the images (preprocess resize) or pick a network "
                f"made for small inputs"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature maps (N, C, h, w) or (N, C, d, h, w), checking the input first."""
        if not (torch.jit.is_tracing() or torch.jit.is_scripting()):
            self.check_input(x)
        return self.extract_features(x)

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """Feature maps -> (N, F) vector read by `classifier`; a global average pool by default."""
        return global_average(maps)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last feature maps, logits) in one pass: what Grad-CAM and the ONNX export read."""
        maps = self.forward_features(x)
        return maps, self.classifier(self.pool(maps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.features_and_logits(x)[1]


def global_average(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, *spatial) -> (N, C) mean over every spatial position."""
    return torch.flatten(maps, 2).mean(dim=2)


def embed(network: Network, x: torch.Tensor) -> torch.Tensor:
    """CNN embedding (N, F): global-average-pooled `forward_features`, in eval mode, no gradients.

    The network's train/eval mode is restored afterwards, so it is safe to call mid-training.
    """
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            return global_average(network.forward_features(x))
    finally:
        network.train(was_training)
