"""A fitted network as a function from a preprocessed batch to probabilities (no training code).

`TorchModel` is what a fitted `TorchClassifier` holds: the input standardisation learned on the
training images + the network (+ the CORAL ordinal head). `ProbabilityModel` adds the task's
probability link (`link_probabilities`: softmax, sigmoid or CORAL) and the test-time flip views;
it is what ``predict_proba`` computes and what a deployment bundle exports to ONNX. Nothing here
imports ``medsight.train``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medsight.data.dataset import Task
from medsight.errors import InvalidConfig

FlipView = tuple[int, ...]


class CumulativeLinkHead(nn.Module):
    """One score -> K-1 cumulative logits ``score - theta_k`` with increasing thresholds."""

    def __init__(self, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise InvalidConfig(f"an ordinal task needs at least 2 grades, got {num_classes}")
        self.num_classes = num_classes
        self.first = nn.Parameter(torch.tensor(-(num_classes - 2) / 2.0))
        # softplus(log(e - 1)) = 1: thresholds start one unit apart
        self.gaps = nn.Parameter(torch.full((num_classes - 2,), math.log(math.e - 1)))

    def thresholds(self) -> torch.Tensor:
        steps = F.softplus(self.gaps)
        return torch.cat([self.first.view(1), self.first + torch.cumsum(steps, 0)])

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        return score[:, :1] - self.thresholds().to(score.dtype)


def link_probabilities(logits: torch.Tensor, task: Task | str, coral: bool = False) -> torch.Tensor:
    """(N, K) class probabilities (multilabel: (N, L) independent label probabilities).

    Softmax for binary/multiclass (and ordinal trained as plain classes), sigmoid per label for
    multilabel; ``coral=True``: the K-1 cumulative logits of `CumulativeLinkHead` become
    P(grade = k) = P(> k-1) - P(> k). Computed in float32 whatever the input dtype.
    """
    logits = logits.float()
    if Task(task) is Task.MULTILABEL:
        return torch.sigmoid(logits)
    if coral:
        above = torch.sigmoid(logits)  # P(grade > k), k = 0..K-2, non-increasing in k
        ones = torch.ones_like(above[:, :1])
        zeros = torch.zeros_like(above[:, :1])
        cum = torch.cat([ones, above, zeros], dim=1)
        p = (cum[:, :-1] - cum[:, 1:]).clamp_min(0)
        return p / p.sum(1, keepdim=True).clamp_min(1e-12)
    return torch.softmax(logits, dim=1)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> the first GPU when CUDA is usable, else the CPU; other names are checked."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise InvalidConfig(f"device {name!r} is not a torch device name ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidConfig(f"device {name!r} asked for, but CUDA is not available on this machine")
    return dev


def flip_views(axes: Sequence[int]) -> list[FlipView]:
    """Test-time views: the identity plus one single-axis flip per (negative) tensor axis."""
    return [(), *[(int(a),) for a in axes]]


class TorchModel(nn.Module):
    """Input standardisation + network (+ ordinal head): the function a fitted classifier is.

    Grey images feed a multi-channel network (e.g. ImageNet weights) by repeating the channel.
    """

    def __init__(self, network: nn.Module, data_channels: int, head: nn.Module | None = None):
        super().__init__()
        self.network = network
        self.head = head
        self.register_buffer("input_mean", torch.zeros(data_channels))
        self.register_buffer("input_std", torch.ones(data_channels))

    def set_input_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32))
        self.input_mean.copy_(torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.input_std.copy_(torch.where(std_t > 1e-6, std_t, torch.ones_like(std_t)))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise the input and repeat grey channels up to the network's input channels."""
        shape = (1, -1) + (1,) * (x.ndim - 2)
        x = (x - self.input_mean.view(shape)) / self.input_std.view(shape)
        want = int(getattr(self.network, "in_channels", x.shape[1]))
        if x.shape[1] == 1 and want > 1:
            x = x.expand(-1, want, *x.shape[2:])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(self.prepare(x))
        return self.head(logits) if self.head is not None else logits

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The network's last feature maps (what Grad-CAM hooks)."""
        return self.network.forward_features(self.prepare(x))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps, logits = self.network.features_and_logits(self.prepare(x))
        return maps, (self.head(logits) if self.head is not None else logits)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) global average of the last feature maps: the CNN embedding."""
        return torch.flatten(self.forward_features(x), 2).mean(dim=2)


class ProbabilityModel(nn.Module):
    """A fitted `TorchModel` with its task link and test-time flips: batch -> probabilities.

    ``forward(x)`` is the mean of the link's probabilities over the flip views (the identity
    first); ``forward_with_features(x)`` also returns the last feature maps of the unflipped
    view (for class activation maps). `flips` lists the views as tuples of tensor axes to flip,
    e.g. ``[(), (-1,)]``; None or empty: the identity only.
    """

    def __init__(self, model: nn.Module, task: Task | str, coral: bool = False,
                 flips: Sequence[FlipView] | None = None):
        super().__init__()
        self.model = model
        self.task = Task(task)
        self.coral = bool(coral)
        views = [tuple(int(a) for a in v) for v in (flips or [()])]
        if () in views:
            views.remove(())
        self.flips: list[FlipView] = [(), *views]

    def _mean_over_flips(self, x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        acc = link_probabilities(first, self.task, self.coral)
        for axes in self.flips[1:]:
            acc = acc + link_probabilities(self.model(x.flip(axes)), self.task, self.coral)
        return acc / len(self.flips)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mean_over_flips(x, self.model(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps, logits = self.model.features_and_logits(x)
        return self._mean_over_flips(x, logits), maps
