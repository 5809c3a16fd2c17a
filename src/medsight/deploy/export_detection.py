"""A fitted `TorchDetector` as the bundle's ONNX graph, and the check that the bundle's own
`Predictor` gives its boxes: decoding (and any NMS) is inside the graph, so the runtime returns
(boxes, scores, labels) on the model-input grid and the Predictor maps them back onto the
original image. Imported only when a bundle is created (it imports torch)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medsight.deploy.export_network import GRAPH, Export
from medsight.errors import BundleIntegrityError, InvalidConfig

BOX_TOL = 1e-3  # pixels of the original image
SCORE_TOL = 1e-5
MAX_CHECK_IMAGES = 64  # a detector runs slower than a classifier; this many test images suffice


def export_detector(estimator: Any) -> Export:
    """The detector's graph and the manifest's runtime section (outputs, K, input)."""
    from medsight.models.export_detector import (
        BOXES_NAME,
        INPUT_NAME,
        LABELS_NAME,
        SCORES_NAME,
        export_detector_onnx,
    )

    if any(step.name == "align" for step in estimator.preprocess_.steps):
        raise InvalidConfig("a detector's preprocessing may not contain 'align': it resamples "
                            "without recording how, so boxes could not be mapped back")
    with tempfile.TemporaryDirectory() as tmp:
        path = export_detector_onnx(estimator, Path(tmp) / GRAPH)
        graph = Path(path).read_bytes()
    # the exporter restores the traced wrapper's training flag, which reaches the network inside
    # it: back to inference mode, so the parity check compares like with like
    estimator.model_.eval()
    runtime = {
        "kind": "detector",
        "format": "onnx",
        "graph": GRAPH,
        "input_name": INPUT_NAME,
        "input_dtype": "float32",
        "detection_outputs": {"boxes": BOXES_NAME, "scores": SCORES_NAME, "labels": LABELS_NAME},
        "n_outputs": len(estimator.classes_),
        "max_detections": int(estimator.max_detections),
        "network": str(getattr(estimator, "network", "")),
        "decoding": "inside the graph: boxes (N, K, 4) xyxy in model-input pixel edges, scores "
                    "(N, K) (0 for padding), labels (N, K), sorted by score",
    }
    heatmap = {"method": None, "cam_weights": None,
               "note": "a detector's explanation is its boxes: the image is drawn with them"}
    return Export({GRAPH: graph}, runtime, heatmap, [])


def detector_parity(bundle: Any, estimator: Any, check: Any) -> dict[str, Any]:
    """Run the bundle's `Predictor` (ONNX Runtime) and `estimator.predict_detections` on up to
    `MAX_CHECK_IMAGES` images of `check`: the same boxes (within `BOX_TOL` px), scores and
    labels are required, else `BundleIntegrityError` (nothing is written)."""
    from medsight.deploy.predictor import Predictor

    part = check.subset(range(min(len(check), MAX_CHECK_IMAGES)), check.name)
    expected = estimator.predict_detections(part)
    got = Predictor(bundle).predict_batch([part.image(i) for i in range(len(part))])
    classes = list(estimator.classes_)
    box_diff = score_diff = 0.0
    n_boxes = 0
    for i, (want, pred) in enumerate(zip(expected, got, strict=True)):
        boxes = np.asarray([b["box"] for b in pred.boxes], np.float64).reshape(-1, 4)
        scores = np.asarray([b["score"] for b in pred.boxes], np.float64)
        labels = [classes.index(b["label"]) for b in pred.boxes]
        if len(boxes) != len(want) or labels != want.labels.tolist():
            raise BundleIntegrityError(
                f"the exported detector does not reproduce predict_detections on image {i} of the "
                f"{check.name}: {len(boxes)} boxes (labels {labels[:8]}) instead of {len(want)} "
                f"({want.labels.tolist()[:8]}); bundle not written")
        if len(boxes):
            box_diff = max(box_diff, float(np.max(np.abs(boxes - want.xyxy))))
            score_diff = max(score_diff, float(np.max(np.abs(scores - want.scores))))
        n_boxes += len(boxes)
    if not (box_diff < BOX_TOL and score_diff < SCORE_TOL):
        raise BundleIntegrityError(
            f"the exported detector does not reproduce predict_detections on the {check.name}: "
            f"max box difference {box_diff:.3g} px (tolerance {BOX_TOL}), max score difference "
            f"{score_diff:.3g} (tolerance {SCORE_TOL}); bundle not written")
    return {"split": check.name, "n": len(part), "boxes": n_boxes, "max_abs_box_diff_px": box_diff,
            "box_tolerance_px": BOX_TOL, "max_abs_score_diff": score_diff,
            "score_tolerance": SCORE_TOL, "labels_identical": True}
