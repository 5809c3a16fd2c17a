"""A fitted `TorchClassifier` or `TorchEnsemble` as the bundle's ONNX graph (+ CAM weights).

The graph is the estimator's own probability function (`ProbabilityModel`: standardisation,
network, link, test-time flips); an ensemble is its members' `ProbabilityModel`s averaged inside
one graph (`MeanProbability`). A single network ending in a global average pool also exports its
last feature maps, and the weights of its final linear layer over the pooled features are stored
as ``cam_weights.npy`` (K, F) so that class activation maps need no PyTorch. Imported only when a
bundle is created.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsight.data.dataset import Task
from medsight.errors import InvalidConfig
from medsight.models.export_onnx import (
    FEATURES_NAME,
    INPUT_NAME,
    PROBABILITIES_NAME,
    MeanProbability,
    export_probability_onnx,
    probability_features,
)

GRAPH = "model.onnx"
CAM_WEIGHTS = "cam_weights.npy"


@dataclass
class Export:
    """Files for the bundle and the manifest sections that describe them."""

    files: dict[str, bytes]
    runtime: dict[str, Any]
    heatmap: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def export_network(estimator: Any) -> Export:
    """The ONNX graph (and CAM weights) of a fitted torch estimator; see the module docstring."""
    members = list(getattr(estimator, "members_", None) or [estimator])
    shapes = {tuple(m.input_shape_) for m in members}
    if len(shapes) != 1:
        raise InvalidConfig(f"ensemble members take different input shapes {sorted(shapes)}")
    shape = shapes.pop()
    models = [m.probability_model() for m in members]
    module: nn.Module = models[0] if len(models) == 1 else MeanProbability(models)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_probability_onnx(module, Path(tmp) / GRAPH, (1, *shape))
        graph = path.read_bytes()
    features = probability_features(module)
    runtime: dict[str, Any] = {
        "kind": "network",
        "format": "onnx",
        "graph": GRAPH,
        "input_name": INPUT_NAME,
        "input_dtype": "float32",
        "probabilities_output": PROBABILITIES_NAME,
        "features_output": FEATURES_NAME if features else None,
        "n_outputs": len(estimator.classes_),
        "network": str(getattr(members[0], "network", "")),
        "tta_flips": [list(v) for v in models[0].flips],
        "probability_link": _link_name(models[0]),
    }
    if len(models) > 1:
        runtime["ensemble"] = {
            "members": len(models),
            "combination": "mean of the members' probabilities, inside one ONNX graph",
        }
    files = {GRAPH: graph}
    heatmap: dict[str, Any] = {"method": "occlusion", "cam_weights": None}
    weights = cam_weights(models[0]) if features else None
    if weights is not None:
        files[CAM_WEIGHTS] = _npy(weights)
        heatmap = {"method": "cam", "cam_weights": CAM_WEIGHTS, "feature_output": FEATURES_NAME,
                   "note": "CAM_k = sum_f cam_weights[k, f] * features[f] (unflipped view)"}
    notes = []
    if len(models) > 1:
        notes.append("an ensemble has one feature map per member: heatmaps by occlusion of the "
                     "averaged probabilities")
    elif features and weights is None:
        notes.append("the network's head is not one linear layer over pooled features (or the "
                     "task is ordinal): heatmaps by occlusion")
    return Export(files, runtime, heatmap, notes)


def cam_weights(model: nn.Module) -> np.ndarray | None:
    """(K, F) weights of the last linear layer over the pooled features; None when the head is
    not a single linear layer (plus parameter-free layers) or the link is CORAL."""
    if getattr(model, "coral", False):
        return None
    torch_model = getattr(model, "model", None)
    if getattr(torch_model, "head", None) is not None:
        return None
    classifier = getattr(getattr(torch_model, "network", None), "classifier", None)
    if classifier is None:
        return None
    linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    others = [m for m in classifier.modules()
              if not isinstance(m, (nn.Linear, nn.Sequential)) and any(True for _ in m.parameters(False))]
    if len(linears) != 1 or others:
        return None
    with torch.no_grad():
        return linears[0].weight.detach().cpu().numpy().astype(np.float32)


def _link_name(model: Any) -> str:
    if getattr(model, "coral", False):
        return "coral (cumulative link)"
    return "sigmoid per label" if Task(model.task) is Task.MULTILABEL else "softmax"


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()
