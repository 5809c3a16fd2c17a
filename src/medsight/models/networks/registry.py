"""The network registry: one decorated factory function per network, timm style.

Adding a network is one small file with one decorated function::

    @register_network("mynet", dims=2, default_size=64, min_size=32, description="...")
    def mynet(in_channels: int = 1, num_classes: int = 2, dropout: float = 0.0) -> Network:
        return MyNet(in_channels, num_classes, dropout)

plus one import line in ``networks/__init__.py``. `create_network` builds it by name (optionally
loading a local checkpoint) and `list_networks` describes everything registered.

The network protocol (every factory returns a `base.Network`):

- ``forward(x) -> logits`` of shape (N, num_classes); ``x`` is (N, C, H, W) for ``dims=2`` and
  (N, C, D, H, W) for ``dims=3``, float32, any edge >= ``min_size`` (smaller raises InvalidConfig).
- ``forward_features(x) -> maps``: the last convolutional feature maps (N, F, h, w[, d]),
  ``F = network.num_features``; Grad-CAM hooks these and CNN embeddings average them (`embed`).
- ``pool(maps) -> (N, F')``: a global average pool (``network.global_pool`` is True) or, for
  AlexNet, the fixed 6x6 adaptive pool flattened (``global_pool`` False).
- ``classifier``: an ``nn.Module`` mapping ``pool(maps)`` to logits; the part of a checkpoint that
  is skipped when the number of classes differs.
- ``features_and_logits(x) -> (maps, logits)`` in one pass (Grad-CAM, the ONNX export).
- attributes ``name``, ``dims``, ``min_size`` (stamped by the registry), ``in_channels``,
  ``num_classes``, ``num_features``.
- Inputs are not normalised inside the network: preprocessing owns intensity scaling.
- No weights are ever downloaded: torchvision networks are built with ``weights=None``; pretrained
  weights come only from a local file passed as ``weights=`` (see `weights.load_weights`).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from medsight.errors import InvalidConfig
from medsight.models.networks.base import Network

Factory = Callable[..., Network]

_REGISTRY: dict[str, NetworkInfo] = {}


@dataclass(frozen=True)
class NetworkInfo:
    """What `list_networks` reports about one registered network."""

    name: str
    dims: int
    default_size: int
    min_size: int
    description: str
    factory: Factory = field(repr=False, compare=False)
    task: str = "classification"

    @property
    def parameters(self) -> int:
        """Parameter count for 1 input channel and 2 classes (computed once, lazily)."""
        return _count_parameters(self.name)

    def input_shape(self, in_channels: int = 1) -> tuple[int, ...]:
        """The default input shape of one sample: (C, H, W) or (C, D, H, W)."""
        return (in_channels, *([self.default_size] * self.dims))


TASKS = ("classification", "detection")


def register_network(
    name: str, *, dims: int, default_size: int, min_size: int, description: str,
    task: str = "classification",
) -> Callable[[Factory], Factory]:
    """Decorator that registers a factory ``f(in_channels, num_classes, **options) -> Network``.

    ``task`` says what the network answers: class logits (``"classification"``, the protocol
    above) or boxes (``"detection"``, `medsight.models.networks.detection`'s protocol); the
    estimators refuse a network of the other task.

    The returned function is the factory wrapped so that every network it builds carries the
    registry metadata (``name``, ``dims``, ``min_size``), whether called directly or by name.
    """
    if dims not in (2, 3):
        raise InvalidConfig(f"network {name}: dims must be 2 or 3, got {dims}")
    if task not in TASKS:
        raise InvalidConfig(f"network {name}: task must be one of {TASKS}, got {task!r}")
    if min_size < 1 or default_size < min_size:
        raise InvalidConfig(
            f"network {name}: need 1 <= min_size <= default_size, got {min_size}, {default_size}"
        )

    def decorate(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise InvalidConfig(f"network name {name!r} is registered twice")

        @functools.wraps(factory)
        def build(*args: object, **kwargs: object) -> Network:
            network = factory(*args, **kwargs)
            network.name, network.dims, network.min_size = name, dims, min_size
            return network

        _REGISTRY[name] = NetworkInfo(name, dims, default_size, min_size, description, build,
                                      task)
        return build

    return decorate


def network_info(name: str) -> NetworkInfo:
    """The registry entry for `name`; InvalidConfig naming the known networks when unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidConfig(f"unknown network {name!r}; registered networks: {known}") from None


def list_networks(task: str | None = None) -> list[NetworkInfo]:
    """Every registered network (of `task` when given), sorted by name (``medsight models list``)."""
    return [_REGISTRY[n] for n in sorted(_REGISTRY) if task is None or _REGISTRY[n].task == task]


def create_network(
    name: str,
    in_channels: int = 1,
    num_classes: int = 2,
    weights: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
    **kwargs: object,
) -> Network:
    """Build the registered network `name`; `weights` is a local checkpoint file (never a download).

    Extra keyword arguments are the factory's options (e.g. ``dropout``); unknown ones raise
    InvalidConfig. See `weights.load_weights` for how a checkpoint with other input channels or
    another number of classes is adapted.
    """
    info = network_info(name)
    for label, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidConfig(f"network {name}: {label} must be a positive integer, got {value!r}")
    signature = inspect.signature(info.factory)
    try:
        signature.bind(in_channels=in_channels, num_classes=num_classes, **kwargs)
    except TypeError:
        accepted = [p for p in signature.parameters if p not in ("in_channels", "num_classes")]
        raise InvalidConfig(
            f"network {name}: unknown option(s) {sorted(kwargs)}; accepted: {accepted or 'none'}"
        ) from None
    network = info.factory(in_channels=in_channels, num_classes=num_classes, **kwargs)
    if weights is not None:
        from medsight.models.networks.weights import load_weights

        load_weights(network, weights)
    return network


@functools.cache
def _count_parameters(name: str) -> int:
    """Parameter count of `name` at 1 channel / 2 classes, built on the meta device (no memory)."""
    factory = network_info(name).factory
    with torch.device("meta"):
        network = factory(in_channels=1, num_classes=2)
    return sum(p.numel() for p in network.parameters())
