"""Box statistics of a detection dataset, from its records alone (no pixels read): per class the
box count, how many images hold it, boxes per image and the width/height/area distribution.

What a user checks before training a detector: are the classes balanced, how small are the
smallest objects, how many objects does an image hold (the counts a detector must reproduce).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsight.data.dataset import Dataset, Task

QUANTILES = {"min": 0.0, "q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95, "max": 1.0}

__all__ = ["QUANTILES", "BoxStats", "ClassBoxStats", "box_statistics"]


def _quantiles(values: np.ndarray) -> dict[str, float] | None:
    if not values.size:
        return None
    return {k: round(float(np.quantile(values, q)), 3) for k, q in QUANTILES.items()}


def _spread(values: np.ndarray) -> dict[str, float]:
    if not values.size:
        return {"mean": 0.0, "min": 0, "max": 0}
    return {"mean": round(float(values.mean()), 3), "min": int(values.min()), "max": int(values.max())}


@dataclass
class ClassBoxStats:
    """One class: ``count`` boxes in ``images`` images; ``per_image`` mean/min/max over every
    annotated image; ``width``/``height``/``area`` quantiles in pixels (None without boxes)."""

    name: str
    count: int
    images: int
    per_image: dict[str, float]
    width: dict[str, float] | None
    height: dict[str, float] | None
    area: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "images": self.images,
                "per_image": dict(self.per_image), "width": self.width, "height": self.height,
                "area": self.area}


@dataclass
class BoxStats:
    """All classes together (``per_image``: boxes per annotated image) and each class."""

    n_boxes: int
    n_annotated: int
    n_empty: int
    n_unannotated: int
    per_image: dict[str, float]
    classes: list[ClassBoxStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"n_boxes": self.n_boxes, "n_annotated": self.n_annotated, "n_empty": self.n_empty,
                "n_unannotated": self.n_unannotated, "per_image": dict(self.per_image),
                "classes": [c.to_dict() for c in self.classes]}


def box_statistics(ds: Dataset) -> BoxStats:
    """The box statistics of detection dataset `ds`."""
    if ds.task is not Task.DETECTION:
        raise ValueError(f"{ds.name} is a {ds.task.value} dataset; box statistics need boxes")
    n = len(ds.classes)
    annotated = [r.boxes for r in ds.records if r.boxes is not None]
    counts = np.array([b.counts(n) for b in annotated], dtype=np.int64).reshape(-1, n)
    xyxy = np.concatenate([b.array() for b in annotated] or [np.zeros((0, 4), np.float32)])
    labels = np.concatenate([b.label_array() for b in annotated] or [np.zeros(0, np.int64)])
    width, height = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    per_class = []
    for k, name in enumerate(ds.classes):
        sel = labels == k
        per_class.append(ClassBoxStats(
            name=name,
            count=int(sel.sum()),
            images=int((counts[:, k] > 0).sum()),
            per_image=_spread(counts[:, k]),
            width=_quantiles(width[sel]),
            height=_quantiles(height[sel]),
            area=_quantiles(width[sel] * height[sel]),
        ))
    totals = counts.sum(axis=1)
    return BoxStats(
        n_boxes=int(totals.sum()),
        n_annotated=len(annotated),
        n_empty=int((totals == 0).sum()),
        n_unannotated=len(ds) - len(annotated),
        per_image=_spread(totals),
        classes=per_class,
    )
