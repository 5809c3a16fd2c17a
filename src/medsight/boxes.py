"""Boxes on an image: `Boxes` (annotations a record carries) and `Detections` (what a detector
predicts), one coordinate convention for both so training, metrics and deployment agree.

Coordinates are pixel *edges* of the image as read: x runs along columns (right), y along rows
(down); a box covering only the top-left pixel is ``(0, 0, 1, 1)``. Pascal VOC, COCO and CSV
values are taken as these edges unchanged (as torchvision and pycocotools read them), so a VOC
box with ``xmin == xmax`` has zero width. Class indices point into the dataset's ``classes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Boxes:
    """The annotated boxes of one image: ``xyxy`` corners and ``labels`` class indices.

    Immutable and hashable (tuples), so records stay frozen; `array()` / `label_array()` give
    numpy views for computation. An empty `Boxes()` is an image annotated as holding nothing.
    """

    xyxy: tuple[tuple[float, float, float, float], ...] = ()
    labels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.xyxy) != len(self.labels):
            raise ValueError(f"{len(self.xyxy)} boxes but {len(self.labels)} labels")
        for b in self.xyxy:
            if len(b) != 4:
                raise ValueError(f"a box needs 4 corners (x1, y1, x2, y2), got {b!r}")

    @classmethod
    def from_arrays(cls, xyxy: np.ndarray | list, labels: np.ndarray | list) -> Boxes:
        arr = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        return cls(tuple(tuple(float(v) for v in row) for row in arr),  # type: ignore[misc]
                   tuple(int(v) for v in np.asarray(labels).reshape(-1)))

    def __len__(self) -> int:
        return len(self.labels)

    def array(self) -> np.ndarray:
        """(N, 4) float32 corners."""
        return np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)

    def label_array(self) -> np.ndarray:
        """(N,) int64 class indices."""
        return np.asarray(self.labels, dtype=np.int64).reshape(-1)

    def counts(self, n_classes: int) -> np.ndarray:
        """Boxes per class, (n_classes,) int64."""
        return np.bincount(self.label_array(), minlength=n_classes)[:n_classes].astype(np.int64)


@dataclass
class Detections:
    """A detector's boxes for one image: ``xyxy`` (N, 4) float32, ``scores`` (N,) float32 in
    [0, 1], ``labels`` (N,) int64, sorted by score (highest first)."""

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not len(self.xyxy) == len(self.scores) == len(self.labels):
            raise ValueError(
                f"detections need as many scores and labels as boxes: {len(self.xyxy)} boxes, "
                f"{len(self.scores)} scores, {len(self.labels)} labels"
            )
        order = np.argsort(-self.scores, kind="stable")
        self.xyxy, self.scores, self.labels = self.xyxy[order], self.scores[order], self.labels[order]

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> Detections:
        """The detections scoring at least `threshold`."""
        keep = self.scores >= threshold
        return Detections(self.xyxy[keep], self.scores[keep], self.labels[keep])

    def counts(self, n_classes: int, threshold: float = 0.0) -> np.ndarray:
        """Detections per class at or above `threshold`, (n_classes,) int64."""
        lab = self.labels[self.scores >= threshold]
        return np.bincount(lab, minlength=n_classes)[:n_classes].astype(np.int64)
