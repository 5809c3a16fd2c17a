"""Export a network, or a fitted model's whole probability function, to ONNX (dynamic batch axis).

`export_onnx` writes a registry network: one input ``input`` (N, C, H, W) or (N, C, D, H, W) and
the outputs ``logits`` (N, K) and, for networks with a global average pool, ``features``: the last
feature maps, from which a deployed model can draw class activation maps without PyTorch.
`export_probability_onnx` writes what a deployment bundle runs: a `ProbabilityModel` (input
standardisation, network, probability link, test-time flips) or a `MeanProbability` of several,
from the preprocessed tensor to ``probabilities`` (+ ``features``). The legacy TorchScript
exporter is used (``dynamo=False``): it needs no extra package and handles every registered
network.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from medsight.errors import InvalidConfig
from medsight.models.networks.base import Network
from medsight.models.networks.registry import network_info

if TYPE_CHECKING:
    import onnxruntime

INPUT_NAME = "input"
LOGITS_NAME = "logits"
FEATURES_NAME = "features"
PROBABILITIES_NAME = "probabilities"


class _ExportView(nn.Module):
    """What gets traced: logits alone, or (logits, feature maps)."""

    def __init__(self, network: Network, with_features: bool) -> None:
        super().__init__()
        self.network = network
        self.with_features = with_features

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        maps, logits = self.network.features_and_logits(x)
        return (logits, maps) if self.with_features else logits


def exports_features(network: Network, with_features: bool = True) -> bool:
    """Whether `export_onnx` adds the ``features`` output for this network (or the network a
    fitted classifier's `TorchModel` wraps)."""
    inner = getattr(network, "network", network)
    return with_features and bool(getattr(inner, "global_pool", False))


class MeanProbability(nn.Module):
    """The mean of several probability models' outputs (an ensemble in one graph)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise InvalidConfig("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.members[0](x)
        for member in self.members[1:]:
            total = total + member(x)
        return total / len(self.members)


class _ProbabilityView(nn.Module):
    """What gets traced for a bundle: probabilities alone, or (probabilities, feature maps)."""

    def __init__(self, model: nn.Module, with_features: bool) -> None:
        super().__init__()
        self.model = model
        self.with_features = with_features

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_features(x) if self.with_features else self.model(x)


def probability_features(model: nn.Module) -> bool:
    """Whether `export_probability_onnx` gives `model` a ``features`` output: a single
    probability model whose network ends in a global average pool."""
    inner = getattr(model, "model", None)
    network = getattr(inner, "network", None)
    return (hasattr(model, "forward_with_features") and network is not None
            and bool(getattr(network, "global_pool", False)))


def export_probability_onnx(model: nn.Module, path: str | os.PathLike[str],
                            input_shape: Sequence[int], with_features: bool = True,
                            opset: int = 17) -> Path:
    """Write a `ProbabilityModel` or `MeanProbability` as ONNX: ``input`` (the preprocessed
    tensor, only N may change) -> ``probabilities`` (N, K) and, when `probability_features`
    holds and `with_features`, ``features`` (last feature maps of the unflipped view)."""
    features = with_features and probability_features(model)
    outputs = [PROBABILITIES_NAME, FEATURES_NAME] if features else [PROBABILITIES_NAME]
    return _export(_ProbabilityView(model, features), model, path, tuple(int(s) for s in input_shape),
                   outputs, opset)


def _export(view: nn.Module, model: nn.Module, path: str | os.PathLike[str], shape: tuple[int, ...],
            outputs: list[str], opset: int) -> Path:
    example = torch.zeros(shape, dtype=torch.float32)
    dynamic = {name: {0: "batch"} for name in [INPUT_NAME, *outputs]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", (DeprecationWarning, torch.jit.TracerWarning))
            torch.onnx.export(
                view, (example,), str(path), dynamo=False,
                input_names=[INPUT_NAME], output_names=outputs, dynamic_axes=dynamic,
                opset_version=opset, do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    import onnx

    onnx.checker.check_model(str(path))
    return path


def export_onnx(
    model: Network,
    path: str | os.PathLike[str],
    input_shape: Sequence[int] | None = None,
    with_features: bool = True,
    opset: int = 17,
) -> Path:
    """Write `model` (in eval mode) to `path` as ONNX with a dynamic batch axis; returns the path.

    `input_shape` is an example (N, C, *spatial) shape (default: one sample at the network's
    registered default size); only N may change at inference time.
    """
    if input_shape is None:
        if not hasattr(model, "name"):
            raise InvalidConfig(f"{type(model).__name__} is not a registered network: "
                                "give input_shape")
        input_shape = (1, *network_info(model.name).input_shape(model.in_channels))
    shape = tuple(int(s) for s in input_shape)
    if hasattr(model, "check_input"):
        model.check_input(torch.zeros(shape, dtype=torch.float32))
    features = exports_features(model, with_features)
    outputs = [LOGITS_NAME, FEATURES_NAME] if features else [LOGITS_NAME]
    return _export(_ExportView(model, features), model, path, shape, outputs, opset)


def export_classifier_onnx(estimator: Any, path: str | os.PathLike[str], with_features: bool = True,
                           opset: int = 17) -> Path:
    """Export a fitted `TorchClassifier`: its input standardisation, network and (ordinal) head,
    i.e. exactly the function behind ``predict_proba`` up to the final softmax/link.

    The input is the preprocessed image, (N, *input_shape_), as the saved `Preprocess` chain
    produces it; only N may change.
    """
    model = getattr(estimator, "model_", None)
    if model is None:
        raise InvalidConfig("the classifier is not fitted: nothing to export")
    return export_onnx(model, path, input_shape=(1, *estimator.input_shape_),
                       with_features=with_features, opset=opset)


def onnx_session(path: str | os.PathLike[str]) -> onnxruntime.InferenceSession:
    """A CPU onnxruntime session for an exported model; InvalidConfig when it cannot be read."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise InvalidConfig(f"ONNX model {path} not found")
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph exception types
        raise InvalidConfig(f"cannot load ONNX model {path}: {exc}") from exc


def check_onnx_parity(
    model: Network, path: str | os.PathLike[str], inputs: np.ndarray | torch.Tensor
) -> float:
    """Largest absolute difference between PyTorch (eval mode) and onnxruntime CPU outputs.

    Compares every output of the ONNX file (logits, and features when exported) on `inputs`.
    """
    batch = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    session = onnx_session(path)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {INPUT_NAME: batch.numpy()}), strict=True))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            maps, logits = model.features_and_logits(batch)
    finally:
        model.train(was_training)
    expected = {LOGITS_NAME: logits, FEATURES_NAME: maps}
    worst = 0.0
    for name, value in got.items():
        if name not in expected:
            raise InvalidConfig(f"ONNX model {path} has an unexpected output {name!r}")
        reference = expected[name].numpy()
        if reference.shape != value.shape:
            raise InvalidConfig(
                f"ONNX output {name} has shape {value.shape}, PyTorch gives {reference.shape}"
            )
        worst = max(worst, float(np.max(np.abs(reference - value))))
    return worst
