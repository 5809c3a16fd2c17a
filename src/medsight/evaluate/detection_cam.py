"""Weakly supervised localisation, measured: a fitted CNN classifier's class activation maps turned
into boxes (`medsight.explain.cam_boxes.heatmap_boxes`) and scored with COCO mAP against true
boxes (the phantoms' recorded lesion boxes), beside two chance baselines that use the same
classifier scores: one whole-image box, and one randomly placed box of the typical true size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medsight.boxes import Boxes, Detections
from medsight.data.dataset import Dataset, Task
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.evaluate.detection import evaluate_detections
from medsight.evaluate.detection_coco import average_precision, coco_evaluate
from medsight.explain.cam import class_activation_map
from medsight.explain.cam_boxes import heatmap_boxes
from medsight.explain.geometry import new_transforms, upsample
from medsight.preprocess.box_geometry import boxes_back


def true_boxes(dataset: Dataset) -> list[Boxes]:
    """Each record's boxes as one class (index 0): ``record.boxes``, else the phantoms'
    ``meta["boxes"]``; an image without lesions has no boxes."""
    out = []
    for r in dataset.records:
        if r.boxes is not None:
            out.append(Boxes(r.boxes.xyxy, (0,) * len(r.boxes)))
        elif "boxes" in r.meta:
            out.append(Boxes.from_arrays(r.meta["boxes"], [0] * len(r.meta["boxes"])))
        else:
            raise InvalidDataset(f"{r.ref} has no true boxes (record.boxes or meta['boxes'])")
    return out


def _head_weights(estimator: Any) -> np.ndarray:
    """(K, F) weights of the single linear layer over globally pooled features (CAM's weights)."""
    import torch

    model = getattr(estimator, "model_", None)
    network = getattr(model, "network", None)
    if network is None or getattr(model, "head", None) is not None or not getattr(
            network, "global_pool", False):
        raise InvalidConfig("class activation maps need a fitted CNN classifier whose head is "
                            "one linear layer over globally pooled features")
    linears = [m for m in network.classifier.modules() if isinstance(m, torch.nn.Linear)]
    if len(linears) != 1:
        raise InvalidConfig(f"the classifier head has {len(linears)} linear layers; CAM needs one")
    return linears[0].weight.detach().cpu().numpy().astype(np.float64)


def cam_detections(estimator: Any, dataset: Dataset, class_index: int,
                   threshold: float = 0.5) -> tuple[list[Detections], np.ndarray]:
    """(CAM boxes per image in original pixels, (N,) probability of `class_index`)."""
    import torch

    weights = _head_weights(estimator)
    prob_model = estimator.probability_model()
    softmax = estimator.task_ is not Task.MULTILABEL
    dets, probs = [], []
    for i in range(len(dataset)):
        image = dataset.image(i)
        x = estimator.preprocess_(image)
        with torch.no_grad():
            proba, maps = prob_model.forward_with_features(
                torch.from_numpy(np.ascontiguousarray(x.pixels, dtype=np.float32))[None])
        p = float(proba[0, class_index])
        spatial = x.pixels.shape[1:]
        heat = upsample(class_activation_map(maps[0].numpy(), weights, class_index, softmax),
                        spatial)
        found = heatmap_boxes(heat, threshold, score=p)
        before = len(image.metadata.get("geometry", []))
        xyxy = boxes_back(found.xyxy, new_transforms(x.metadata, before), image.spatial_shape)
        dets.append(Detections(xyxy, found.scores, found.labels))
        probs.append(p)
    return dets, np.asarray(probs)


def _baselines(truth: Sequence[Boxes], probs: np.ndarray, shapes: list[tuple[int, int]],
               seed: int) -> dict[str, list[Detections]]:
    sizes = np.concatenate([b.array()[:, 2:] - b.array()[:, :2] for b in truth])
    w, h = (np.median(sizes, axis=0) if len(sizes) else (1.0, 1.0))
    rng = np.random.default_rng(seed)
    whole, random = [], []
    for p, (rows, cols) in zip(probs, shapes, strict=True):
        whole.append(Detections([[0, 0, cols, rows]], [p], [0]))
        x, y = rng.uniform(0, max(cols - w, 0)), rng.uniform(0, max(rows - h, 0))
        random.append(Detections([[x, y, x + w, y + h]], [p], [0]))
    return {"whole_image": whole, "random_box": random}


def evaluate_cam_boxes(estimator: Any, dataset: Dataset, class_index: int | None = None,
                       threshold: float = 0.8, loose_iou: float = 0.1, ci: bool = False,
                       n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """mAP of CAM boxes of `class_index` (default: the positive class) against the true boxes,
    with the whole-image and random-box baselines: ``{"cam": metrics, "whole_image": metrics,
    "random_box": metrics, "class", "threshold", "loose_iou", "n_images", "n_boxes"}``.

    Each metrics dict is `evaluate_detections`' plus ``map_loose``: AP at IoU `loose_iou`, since
    a CAM on a coarse feature grid may point at a small lesion with a box too large for IoU 0.5.
    """
    if class_index is None:
        class_index = dataset.positive_class if dataset.positive_class is not None else 1
    if not 0 <= class_index < len(estimator.classes_):
        raise InvalidConfig(f"class index {class_index} is not one of the model's classes "
                            f"{estimator.classes_}")
    truth = true_boxes(dataset)
    if not any(len(b) for b in truth):
        raise InvalidDataset(f"{dataset.name} holds no true box to localise")
    dets, probs = cam_detections(estimator, dataset, class_index, threshold)
    name = [str(estimator.classes_[class_index])]
    shapes = [tuple(dataset.image(i).spatial_shape) for i in range(len(dataset))]
    runs = {"cam": dets, **_baselines(truth, probs, shapes, seed)}
    out: dict[str, Any] = {}
    for key, found in runs.items():
        metrics = evaluate_detections(truth, found, name, ci=ci, n_boot=n_boot, seed=seed).metrics
        loose, _ = coco_evaluate(truth, found, 1, iou_thresholds=[loose_iou])
        out[key] = {**metrics, "map_loose": average_precision(loose)["map50"]}
    out.update({"class": name[0], "threshold": float(threshold), "loose_iou": float(loose_iou),
                "n_images": len(truth), "n_boxes": int(sum(len(b) for b in truth))})
    return out
