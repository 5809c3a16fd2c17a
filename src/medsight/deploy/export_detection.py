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
    `MAX_CHECK_IMAGES` images of `check`: every box must have its twin (same label, corners
    within `BOX_TOL` px, score within `SCORE_TOL`) on the other side, else `BundleIntegrityError`
    (nothing is written). Boxes are matched, not compared by rank: equal scores may come out of
    top-k in another order. A box without a twin is forgiven only where a list was cut (its
    score within `SCORE_TOL` of the floor, or of the lowest of ``max_detections`` boxes)."""
    from medsight.deploy.predictor import Predictor

    part = check.subset(range(min(len(check), MAX_CHECK_IMAGES)), check.name)
    expected = estimator.predict_detections(part)
    got = Predictor(bundle).predict_batch([part.image(i) for i in range(len(part))])
    classes = list(estimator.classes_)
    cut = (float(estimator.min_score), int(estimator.max_detections))
    box_diff = score_diff = 0.0
    n_boxes = at_cut = 0
    for i, (want, pred) in enumerate(zip(expected, got, strict=True)):
        if want is None:  # unreadable for the estimator too
            continue
        mine = (np.asarray([b["box"] for b in pred.boxes], np.float64).reshape(-1, 4),
                np.asarray([b["score"] for b in pred.boxes], np.float64),
                np.asarray([classes.index(b["label"]) for b in pred.boxes], np.int64))
        theirs = (want.xyxy.astype(np.float64), want.scores.astype(np.float64), want.labels)
        d_box, d_score, unmatched = _match(mine, theirs)
        lost = [sc for sc in unmatched if not _at_cut(sc, mine[1], theirs[1], *cut)]
        if lost or not (d_box < BOX_TOL and d_score < SCORE_TOL):
            raise BundleIntegrityError(
                f"the exported detector does not reproduce predict_detections on image {i} of the "
                f"{check.name}: {len(lost)} boxes without a twin, max box difference {d_box:.3g} "
                f"px (tolerance {BOX_TOL}), max score difference {d_score:.3g} (tolerance "
                f"{SCORE_TOL}); bundle not written")
        box_diff, score_diff = max(box_diff, d_box), max(score_diff, d_score)
        n_boxes += len(mine[1])
        at_cut += len(unmatched)
    return {"split": check.name, "n": len(part), "boxes": n_boxes, "max_abs_box_diff_px": box_diff,
            "box_tolerance_px": BOX_TOL, "max_abs_score_diff": score_diff,
            "score_tolerance": SCORE_TOL, "labels_identical": True, "tied_at_cut": at_cut}


Boxes = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy (N, 4), scores (N,), labels (N,)


def _match(a: Boxes, b: Boxes) -> tuple[float, float, list[float]]:
    """Pair each box of `a` (highest score first) with the nearest unpaired box of `b` of the
    same label: (max corner difference, max score difference over the pairs, scores of the
    boxes of either side left unpaired or paired farther than `BOX_TOL`)."""
    free = np.ones(len(b[1]), bool)
    d_box = d_score = 0.0
    unmatched: list[float] = []
    for box, score, label in zip(*a, strict=True):
        dist = np.where(free & (b[2] == label), np.abs(b[0] - box).max(axis=1, initial=0.0), np.inf)
        j = int(np.argmin(dist)) if len(dist) else -1
        if j < 0 or dist[j] >= BOX_TOL:
            unmatched.append(float(score))
            continue
        free[j] = False
        d_box, d_score = max(d_box, float(dist[j])), max(d_score, abs(float(score - b[1][j])))
    return d_box, d_score, unmatched + [float(v) for v in b[1][free]]


def _at_cut(score: float, a: np.ndarray, b: np.ndarray, floor: float, k: int) -> bool:
    """Whether a box scoring `score` sits where a list was cut: at the floor, or at the lowest
    score of a side that returned `k` boxes (which of several tied boxes make it is arbitrary)."""
    lows = [float(s.min()) for s in (a, b) if len(s) == k]
    return abs(score - floor) < SCORE_TOL or any(abs(score - low) < SCORE_TOL for low in lows)
