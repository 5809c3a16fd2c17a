"""Detection report figures as PNG bytes: per-class precision-recall curves at IoU 0.5, predicted
against true counts per image, and a grid of images with true and predicted boxes drawn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from medsight.boxes import Boxes, Detections
from medsight.evaluate.detection import DetectionEvaluation
from medsight.evaluate.plots import _png, plt
from medsight.explain.box_overlay import TRUTH_COLOUR, draw_boxes, to_rgb_uint8

MIN_DRAWN = 320  # pixels on the long side of a drawn example: room for the captions


def pr_curves_plot(ev: DetectionEvaluation) -> bytes:
    """COCO's interpolated precision against recall at IoU 0.5, one line per class with boxes."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for k, name in enumerate(ev.classes):
        curve = ev.pr_curves[k]
        if np.all(np.isnan(curve)):
            continue
        ap = ev.metrics["per_class_ap"][name]["ap50"]
        ax.plot(ev.recall_thresholds, curve, label=f"{name} (AP50 {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (IoU 0.5)",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def counts_plot(ev: DetectionEvaluation) -> bytes:
    """Predicted against true count per image, one panel per class (the diagonal is exact)."""
    k = len(ev.classes)
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.3), squeeze=False, layout="constrained")
    threshold = ev.metrics["score_threshold"]
    for j, (ax, name) in enumerate(zip(axes[0], ev.classes, strict=True)):
        t, p = ev.true_counts[:, j], ev.pred_counts[:, j]
        top = max(int(t.max(initial=0)), int(p.max(initial=0)), 1)
        jitter = np.random.default_rng(j).uniform(-0.15, 0.15, (2, len(t)))
        ax.plot([0, top], [0, top], ls="--", c="grey", lw=0.8)
        ax.scatter(t + jitter[0], p + jitter[1], s=12, alpha=0.6)
        exact = ev.metrics["count_exact"][name]
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="true count", ylabel="predicted count",
               title=f"{name}: exact on {100 * exact:.0f}%", xlim=(-0.5, top + 0.5),
               ylim=(-0.5, top + 0.5))
    fig.suptitle(f"Counts per image (score >= {threshold:.2f})", fontsize=9)
    return _png(fig)


def annotated_image(pixels: np.ndarray, truth: Boxes | None, predicted: Detections | None,
                    classes: Sequence[str], threshold: float = 0.0,
                    min_size: int = MIN_DRAWN) -> np.ndarray:
    """(H, W, 3) uint8: the image with true boxes (green, no score) and the detections scoring at
    least `threshold` (class colours, with label and score). An image smaller than `min_size`
    on its long side is first enlarged by a whole factor (nearest pixel) so captions fit."""
    rgb = to_rgb_uint8(pixels)
    k = max(1, -(-int(min_size) // max(rgb.shape[:2])))
    if k > 1:
        rgb = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
    if truth is not None and len(truth):
        rgb = draw_boxes(rgb, truth.array() * k, truth.label_array(), None, classes, TRUTH_COLOUR)
    if predicted is not None:
        shown = predicted.above(threshold)
        rgb = draw_boxes(rgb, shown.xyxy * k, shown.labels, shown.scores, classes)
    return rgb


def boxes_grid(pictures: Sequence[np.ndarray], titles: Sequence[str], ncols: int = 3) -> bytes:
    """A grid of already drawn (H, W, 3) uint8 pictures with titles."""
    n = max(len(pictures), 1)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, pic, title in zip(axes.ravel(), pictures, titles, strict=False):
        ax.imshow(pic)
        ax.set_title(title, fontsize=8)
    return _png(fig)
