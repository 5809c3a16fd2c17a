"""Detection metrics' building blocks: pycocotools' bbox evaluation on COCO objects built in
memory (mAP@0.5, mAP@0.5:0.95, per-class AP, PR curves) and the counting error per image and class.

Ground truth is one `Boxes` per image, predictions one `Detections` per image, in the same pixel
edges (see `medsight.boxes`). pycocotools matches detections to boxes once per image;
`DetectionMatches` keeps those matches so a bootstrap over images can recompute AP from them
with pycocotools' own accumulation rule (`weighted_ap`), without matching again.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.boxes import Boxes, Detections
from medsight.errors import InvalidDataset

MAX_DETECTIONS = 100  # COCO's maxDets for AP: detections per image that count
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # as pycocotools' recThrs
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # as pycocotools' iouThrs


@dataclass
class ClassMatches:
    """One class's detections over all images, as pycocotools matched them.

    ``image`` (D,) image index of each detection, ``scores`` (D,), ``matched`` / ``ignored``
    (T, D) per IoU threshold; ``n_true`` (n_images,) non-ignored true boxes per image. The
    detections are in pycocotools' order: images in turn, by score within an image.
    """

    image: np.ndarray
    scores: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    n_true: np.ndarray


@dataclass
class DetectionMatches:
    """Per-class matches of a whole evaluation (what `weighted_ap` resamples)."""

    classes: list[ClassMatches]
    n_images: int


def _coco_objects(truth: Sequence[Boxes], predictions: Sequence[Detections], n_classes: int):
    """(gt, dt) pycocotools COCO objects; image ids 1..N, category ids 1..K (index + 1)."""
    from pycocotools.coco import COCO

    images = [{"id": i + 1} for i in range(len(truth))]
    categories = [{"id": k + 1} for k in range(n_classes)]
    gt_anns, dt_anns = [], []
    for i, boxes in enumerate(truth):
        for (x1, y1, x2, y2), label in zip(boxes.xyxy, boxes.labels, strict=True):
            w, h = x2 - x1, y2 - y1
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": i + 1, "category_id": label + 1,
                            "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
    for i, det in enumerate(predictions):
        for (x1, y1, x2, y2), score, label in zip(det.xyxy.tolist(), det.scores.tolist(),
                                                  det.labels.tolist(), strict=True):
            w, h = x2 - x1, y2 - y1
            dt_anns.append({"id": len(dt_anns) + 1, "image_id": i + 1, "category_id": label + 1,
                            "bbox": [x1, y1, w, h], "area": w * h, "score": score, "iscrowd": 0})
    coco = []
    for anns in (gt_anns, dt_anns):
        c = COCO()
        c.dataset = {"images": images, "categories": categories, "annotations": anns}
        with contextlib.redirect_stdout(io.StringIO()):
            c.createIndex()
        coco.append(c)
    return coco[0], coco[1]


def check_detection_inputs(truth: Sequence[Boxes], predictions: Sequence[Detections],
                           n_classes: int) -> None:
    """InvalidDataset unless there is one prediction per image and every label is a class."""
    if len(truth) != len(predictions):
        raise InvalidDataset(
            f"{len(truth)} annotated images but {len(predictions)} predictions; give one "
            "Detections (possibly empty) per image, in the same order"
        )
    if len(truth) == 0:
        raise InvalidDataset("no images to evaluate detections on")
    for what, items in (("true box", [b.label_array() for b in truth]),
                        ("detection", [d.labels for d in predictions])):
        labels = np.concatenate(items) if items else np.zeros(0, np.int64)
        bad = labels[(labels < 0) | (labels >= n_classes)]
        if bad.size:
            raise InvalidDataset(
                f"a {what} has class index {int(bad[0])}, outside the {n_classes} classes"
            )


def coco_evaluate(truth: Sequence[Boxes], predictions: Sequence[Detections], n_classes: int,
                  max_detections: int = MAX_DETECTIONS,
                  iou_thresholds: Sequence[float] | None = None) -> tuple[Any, DetectionMatches]:
    """Run pycocotools' bbox evaluation (quietly); (the accumulated COCOeval, its matches).

    `iou_thresholds` replaces COCO's 0.50:0.05:0.95 (the first one is then "AP50"'s place)."""
    from pycocotools.cocoeval import COCOeval

    check_detection_inputs(truth, predictions, n_classes)
    gt, dt = _coco_objects(truth, predictions, n_classes)
    ev = COCOeval(gt, dt, iouType="bbox")
    ev.params.maxDets = [1, 10, int(max_detections)]
    if iou_thresholds is not None:
        ev.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return ev, _matches(ev, len(truth), n_classes, int(max_detections))


def _matches(ev: Any, n_images: int, n_classes: int, max_det: int) -> DetectionMatches:
    """The per-image matches of area range 'all' (index 0 of pycocotools' evalImgs layout)."""
    n_areas = len(ev.params.areaRng)
    n_iou = len(ev.params.iouThrs)
    out = []
    for k in range(n_classes):
        image, scores, matched, ignored = [], [], [], []
        n_true = np.zeros(n_images, np.int64)
        for i in range(n_images):
            e = ev.evalImgs[k * n_areas * n_images + i]
            if e is None:
                continue
            s = np.asarray(e["dtScores"][:max_det], np.float64)
            image.append(np.full(len(s), i))
            scores.append(s)
            matched.append(np.asarray(e["dtMatches"])[:, :max_det] > 0)
            ignored.append(np.asarray(e["dtIgnore"])[:, :max_det].astype(bool))
            n_true[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
        out.append(ClassMatches(_cat(image, np.int64, (0,)), _cat(scores, np.float64, (0,)),
                                _cat(matched, bool, (n_iou, 0)), _cat(ignored, bool, (n_iou, 0)),
                                n_true))
    return DetectionMatches(out, n_images)


def _cat(parts: list[np.ndarray], dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts, axis=-1) if parts else np.zeros(shape, dtype)


def weighted_ap(m: ClassMatches, weights: np.ndarray, chunk_elements: int = 4_000_000) -> np.ndarray:
    """(B, T) AP of one class per IoU threshold when image i counts ``weights[b, i]`` times.

    pycocotools' accumulation with every detection and true box repeated as often as its image
    (integer weights give exactly pycocotools' AP on the repeated images, up to the order of
    equal scores from different images); NaN where the class has no true box.
    """
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n_iou = m.matched.shape[0]
    out = np.full((len(w), n_iou), np.nan)
    order = np.argsort(-m.scores, kind="mergesort")
    tp = (m.matched & ~m.ignored)[:, order].astype(np.float64)
    fp = (~m.matched & ~m.ignored)[:, order].astype(np.float64)
    img = m.image[order]
    n_pos = w @ m.n_true.astype(np.float64)
    step = max(1, chunk_elements // max(1, n_iou * len(img)))
    for start in range(0, len(w), step):
        wd = w[start:start + step][:, img][:, None, :]  # (b, 1, D)
        tps, fps = np.cumsum(wd * tp, axis=2), np.cumsum(wd * fp, axis=2)
        for j in range(len(wd)):
            b = start + j
            if n_pos[b] <= 0:
                continue
            for t in range(n_iou):
                out[b, t] = _ap_from_cumsums(tps[j, t], fps[j, t], n_pos[b])
    return out


def _ap_from_cumsums(tps: np.ndarray, fps: np.ndarray, n_pos: float) -> float:
    """pycocotools' 101-point interpolated AP from cumulative TP/FP counts."""
    if len(tps) == 0:
        return 0.0
    rc = tps / n_pos
    pr = tps / (fps + tps + np.spacing(1))
    envelope = np.maximum.accumulate(pr[::-1])[::-1]
    inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
    q = np.where(inds < len(rc), envelope[np.minimum(inds, len(rc) - 1)], 0.0)
    return float(q.mean())


def _mean_defined(values: np.ndarray) -> float | None:
    ok = values[np.isfinite(values)]
    return float(ok.mean()) if ok.size else None


def average_precision(ev: Any) -> dict[str, Any]:
    """mAP@0.5, mAP@0.5:0.95, per-class AP (both) and per-class PR curves at IoU 0.5 from an
    accumulated COCOeval (area 'all', the largest maxDets); None/NaN for a class with no box.
    (With other IoU thresholds: "map50" is at the first one, "map50_95" the mean over all.)"""
    prec = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]  # (T, R, K)
    prec = np.where(prec < 0, np.nan, prec)  # a class without true boxes is undefined
    ap_t = prec.mean(axis=1)  # (T, K)
    ap50, ap = ap_t[0], ap_t.mean(axis=0)
    return {"map50": _mean_defined(ap50), "map50_95": _mean_defined(ap),
            "ap50": ap50, "ap": ap, "pr_curves": prec[0].T}


def count_errors(truth: Sequence[Boxes], predictions: Sequence[Detections], n_classes: int,
                 score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) counts per image and class, (N, K) each, predictions counted at
    `score_threshold` (what a reader of the counts sees)."""
    true = np.stack([b.counts(n_classes) for b in truth]) if truth else np.zeros((0, n_classes))
    pred = (np.stack([d.counts(n_classes, score_threshold) for d in predictions])
            if predictions else np.zeros((0, n_classes)))
    return true.astype(np.int64), pred.astype(np.int64)


def count_metrics(true: np.ndarray, pred: np.ndarray, weights: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(MAE, exact-count rate) per class, each (B, K) for image `weights` (B, N) (default one
    row of ones): the mean absolute count error and the share of images counted exactly."""
    w = np.ones((1, len(true))) if weights is None else np.atleast_2d(weights)
    err = np.abs(pred - true).astype(np.float64)
    total = w.sum(axis=1, keepdims=True)
    return (w @ err) / total, (w @ (err == 0).astype(np.float64)) / total
