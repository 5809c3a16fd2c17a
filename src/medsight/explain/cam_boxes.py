"""Heatmap -> candidate boxes (weakly supervised localisation): each connected region of a
thresholded CAM or occlusion map becomes one box, scored by its peak heat, so a classifier's
heatmap claims can be measured as detections (mAP against true boxes)."""

from __future__ import annotations

import numpy as np

from medsight.boxes import Detections
from medsight.errors import InvalidConfig


def heatmap_boxes(heat: np.ndarray, threshold: float = 0.5, score: float = 1.0, label: int = 0,
                  min_pixels: int = 1) -> Detections:
    """Boxes around the 8-connected regions where `heat` (H, W) reaches `threshold`.

    A box encloses its region in pixel edges of the heatmap's grid (a region covering only pixel
    (r, c) gives ``(c, r, c + 1, r + 1)``); its score is ``score`` times the region's peak heat,
    so passing the classifier's probability for the class ranks boxes across images (CAMs are
    scaled to a peak of 1 per image). Regions under `min_pixels` pixels are left out.
    """
    from scipy import ndimage  # on first use: the predictor imports this package at start

    h = np.asarray(heat, dtype=np.float64)
    if h.ndim != 2:
        raise InvalidConfig(f"heatmap_boxes needs a 2D heatmap, got shape {h.shape}")
    if not np.isfinite(threshold) or threshold <= 0:
        raise InvalidConfig(f"the heat threshold must be positive, got {threshold}")
    regions, n = ndimage.label(np.nan_to_num(h) >= threshold, structure=np.ones((3, 3)))
    if n == 0:
        return Detections()
    index = np.arange(1, n + 1)
    peaks = np.asarray(ndimage.maximum(h, regions, index), dtype=np.float64)
    sizes = np.asarray(ndimage.sum_labels(np.ones_like(h), regions, index))
    boxes, scores = [], []
    for k, where in enumerate(ndimage.find_objects(regions)):
        if where is None or sizes[k] < min_pixels:
            continue
        rows, cols = where
        boxes.append([cols.start, rows.start, cols.stop, rows.stop])
        scores.append(float(score) * peaks[k])
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), scores,
                      np.full(len(scores), int(label)))
