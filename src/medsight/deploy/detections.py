"""A detector's raw output as a `Prediction` says it: boxes mapped back onto the original image,
counts per class at the bundle's score threshold, a label a clinician reads, the annotated
picture, and COCO rows (``medsight predict``'s ``X.coco.json``).

Boxes travel as `medsight.boxes.Detections` (xyxy pixel edges, highest score first), the type
the detector estimator and the metrics use; it lives below every layer and imports only numpy, so
a prediction's cold start loads no dataset source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.boxes import Detections
from medsight.preprocess.box_geometry import boxes_back

DEFAULT_MIN_SCORE = 0.05  # boxes scoring lower are not returned at all (bundles state their own)


@dataclass(frozen=True)
class DetectionSpec:
    """What a detector bundle's manifest fixes: the classes, the score threshold boxes are
    counted (and drawn) at, and the floor below which boxes are not returned."""

    classes: tuple[str, ...]
    threshold: float
    min_score: float

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> DetectionSpec:
        det = manifest.get("detection") or {}
        threshold = (manifest.get("threshold") or {}).get("value")
        return cls(tuple(str(c) for c in manifest["classes"]),
                   float(0.5 if threshold is None else threshold),
                   float(det.get("min_score", DEFAULT_MIN_SCORE)))


def to_original(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, spec: DetectionSpec,
                transforms: Sequence[Mapping[str, Any]], original_shape: Sequence[int]) -> Detections:
    """One image's graph output (K boxes on the model-input grid sorted by score, padding scored
    0) -> the boxes above the floor, in pixel edges of the original image (clipped to it)."""
    scores = np.asarray(scores, dtype=np.float32)
    keep = (scores >= spec.min_score) & (scores > 0)
    xyxy = boxes_back(np.asarray(boxes)[keep], transforms, tuple(original_shape)[-2:])
    return Detections(xyxy, scores[keep], np.asarray(labels, dtype=np.int64)[keep])


def count_label(counts: Mapping[str, int]) -> str:
    """The counts as one line in class order, every class named: ``"12 RBC, 1 WBC, 0 Platelets"``."""
    return ", ".join(f"{n} {c}" for c, n in counts.items())


def summarise(found: Detections, spec: DetectionSpec
              ) -> tuple[list[dict[str, Any]], dict[str, int], str, float]:
    """(box rows, counts at the threshold, label, confidence) of one image's boxes."""
    rows = [{"label": spec.classes[int(k)], "score": round(float(s), 6),
             "box": [round(float(v), 4) for v in b]}
            for b, s, k in zip(found.xyxy, found.scores, found.labels, strict=True)]
    counted = found.above(spec.threshold)
    n = np.bincount(counted.labels, minlength=len(spec.classes))[:len(spec.classes)]
    counts = {c: int(v) for c, v in zip(spec.classes, n, strict=True)}
    return rows, counts, count_label(counts), float(counted.scores.max(initial=0.0))


def annotated_png(pixels: np.ndarray, found: Detections, spec: DetectionSpec) -> bytes:
    """The image with the boxes at or above the threshold drawn, each with its label and score."""
    from medsight.explain.box_overlay import draw_boxes, to_rgb_uint8
    from medsight.explain.overlay import png_bytes

    shown = found.above(spec.threshold)
    return png_bytes(draw_boxes(to_rgb_uint8(pixels), shown.xyxy, shown.labels,
                                scores=shown.scores, classes=list(spec.classes)))


def coco_results(image_id: int, boxes: Sequence[Mapping[str, Any]], classes: Sequence[str]
                 ) -> list[dict[str, Any]]:
    """COCO detection results rows of one image: ``bbox`` is [x, y, width, height] in pixels,
    ``category_id`` the class index + 1 (as `coco_categories` numbers them)."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for b in boxes:
        x1, y1, x2, y2 = (float(v) for v in b["box"])
        out.append({"image_id": image_id, "category_id": index[b["label"]] + 1,
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": float(b["score"])})
    return out


def coco_categories(classes: Sequence[str]) -> list[dict[str, Any]]:
    """The COCO ``categories`` of a bundle's classes, numbered from 1 in class order."""
    return [{"id": i + 1, "name": c} for i, c in enumerate(classes)]


__all__ = ["DetectionSpec", "annotated_png", "coco_categories", "coco_results", "count_label",
           "summarise", "to_original"]
