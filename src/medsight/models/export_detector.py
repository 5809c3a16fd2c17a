"""Export a fitted `TorchDetector` to ONNX with its box decoding inside the graph.

One input ``input`` (N, C, H, W) float32, the preprocessed image (input standardisation is in
the graph), and three outputs: ``boxes`` (N, K, 4) float32 xyxy in model-input pixel edges,
``scores`` (N, K) float32 (0 for padding) and ``labels`` (N, K) int64, K = ``max_detections``,
sorted by score. CenterNet's decoding (sigmoid, 3x3 max-pool peak test, top-k, gathers) is plain
ONNX (TopK, MaxPool, GatherElements), so no NonMaxSuppression is needed and the batch axis stays
dynamic. torchvision's RetinaNet / Faster R-CNN are refused: their post-processing loops over
the images of a batch with data-dependent shapes (per-image NMS), which the TorchScript exporter
freezes to the example batch; they remain usable through `TorchDetector.predict_detections`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.errors import InvalidConfig
from medsight.models.export_onnx import INPUT_NAME, onnx_session

BOXES_NAME = "boxes"
SCORES_NAME = "scores"
LABELS_NAME = "labels"
OUTPUTS = (BOXES_NAME, SCORES_NAME, LABELS_NAME)

__all__ = ["BOXES_NAME", "INPUT_NAME", "LABELS_NAME", "SCORES_NAME", "check_detector_parity",
           "export_detector_onnx"]


def export_detector_onnx(estimator: Any, path: str | os.PathLike[str], opset: int = 17) -> Path:
    """Write the fitted detector's `detection_view` to `path` (dynamic batch axis); the path."""
    if not hasattr(estimator, "model_"):
        raise InvalidConfig("the detector is not fitted: nothing to export")
    network = estimator.model_.network
    if getattr(network, "loss_kind", "") != "centernet":
        raise InvalidConfig(
            f"ONNX export of network {estimator.network!r} is not supported: torchvision "
            "detectors post-process each image with data-dependent shapes (per-image NMS) that "
            "the exporter freezes to one batch; export a CenterNet detector (centernet_small, "
            "centernet_resnet18) for a bundle"
        )
    view = estimator.detection_view()
    example = torch.zeros((1, *estimator.input_shape_), dtype=torch.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUTS)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", (DeprecationWarning, torch.jit.TracerWarning))
        torch.onnx.export(view, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=list(OUTPUTS), dynamic_axes=dynamic, opset_version=opset,
                          do_constant_folding=True)
    import onnx

    onnx.checker.check_model(str(path))
    return path


def check_detector_parity(estimator: Any, path: str | os.PathLike[str],
                          inputs: np.ndarray) -> dict[str, float]:
    """Largest differences between ONNX Runtime and PyTorch on preprocessed `inputs`: boxes (px)
    and scores over the detections PyTorch scores at least ``min_score``, and whether the
    labels of those are identical."""
    session = onnx_session(path)
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    got = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {INPUT_NAME: x}), strict=True))
    with torch.no_grad():
        want = [t.numpy() for t in estimator.detection_view()(torch.from_numpy(x))]
    keep = want[1] >= float(estimator.min_score)
    return {
        "max_box_diff_px": float(np.abs(got[BOXES_NAME] - want[0])[keep].max(initial=0.0)),
        "max_score_diff": float(np.abs(got[SCORES_NAME] - want[1]).max(initial=0.0)),
        "labels_identical": bool(np.array_equal(got[LABELS_NAME][keep], want[2][keep])),
        "detections": int(keep.sum()),
    }
