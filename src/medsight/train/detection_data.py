"""Detection data for training: preprocessed images in a compact cache with their boxes moved
onto the model-input grid, the validation score (COCO mAP@0.5 through `medsight.evaluate`) and
the validation choice of the score threshold.

Each record is decoded and preprocessed once (`preprocess_with_geometry`), in memory or in the
disk cache (`medsight.train.disk_cache`, rows with their boxes); its boxes are mapped
forward through the index maps the geometry steps recorded (`boxes_forward`, clipped to the
grid); boxes a crop cut to nothing are dropped and counted (``boxes_lost``), unreadable images
skipped and named (``errors``), never silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.boxes import Boxes, Detections
from medsight.data.dataset import Dataset
from medsight.errors import InvalidConfig, InvalidDataset, UnreadableImage
from medsight.models.detector_inference import (
    DetectorModel,
    ImageTransform,
    detect_batches,
    iter_prepared,
)
from medsight.preprocess.box_geometry import boxes_forward
from medsight.train.data import CachedImages, ImageCache
from medsight.train.device import RunSettings
from medsight.train.disk_cache import RowChunk, RowProducer, cached_rows, record_keys

log = logging.getLogger(__name__)
MIN_SIDE = 1.0  # px on the model-input grid: a box thinner than this cannot be learnt
DISK_CHUNK = 64  # images decoded before they are written to the disk cache (peak memory)


@dataclass
class DetectionImages:
    """Cached model inputs of a detection dataset and, per cached row, the boxes (M, 4) float32
    xyxy on the input grid and labels (M,) int64; ``index[i]`` is row i's dataset position."""

    cache: ImageCache
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    errors: list[tuple[str, str]] = field(default_factory=list)
    boxes_lost: int = 0

    @property
    def index(self) -> np.ndarray:
        return self.cache.index

    def truth(self) -> list[Boxes]:
        return [Boxes.from_arrays(b.numpy(), lab.numpy())
                for b, lab in zip(self.boxes, self.labels, strict=True)]

    def loop_data(self) -> CachedImages:
        """The loop's view: targets are the row numbers (the objective looks the boxes up)."""
        return CachedImages(self.cache, torch.arange(len(self.cache)))


DETECTION_CACHES = ("memory", "disk")


def check_detection_cache(cache: str) -> None:
    """Refuse a training-image cache a detector cannot take (streaming is for classifiers)."""
    if cache not in DETECTION_CACHES:
        raise InvalidConfig(f"cache must be one of {list(DETECTION_CACHES)} for a detector "
                            f"(streaming is for classifiers), got {cache!r}")


def build_detection_images(dataset: Dataset, preprocess: ImageTransform | None,
                           dtype: str = "auto", workers: int = 1, cache: str = "memory",
                           cache_dir: str | Path | None = None) -> DetectionImages:
    """Decode, preprocess and cache the annotated records of `dataset` with their boxes:
    in memory, or (``cache="disk"``) in the memory-mapped disk cache of
    `medsight.train.disk_cache`, in pools of their own whose rows keep their boxes, so a later
    run or fold decodes only what the cache lacks and memory holds no pixels."""
    check_detection_cache(cache)
    if cache == "disk":
        return _disk_images(dataset, preprocess, dtype, workers, cache_dir)
    # one chunk of every image: the producer's stacked array is the cache's input, not copied
    chunks = list(_detection_rows(preprocess, workers, max(1, len(dataset)))(dataset))
    errors = [(dataset.records[i].ref, why) for c in chunks for i, why in c.errors.items()]
    index = [i for c in chunks for i in c.ok]
    rows = [row for c in chunks for row in c.extras or []]
    if not index:
        first = f"; first error: {errors[0][0]}: {errors[0][1]}" if errors else ""
        raise InvalidDataset(f"{dataset.name}: no readable annotated images{first}")
    pixels = [c.x for c in chunks if len(c.x)]
    base = ImageCache.from_array(pixels[0] if len(pixels) == 1 else np.concatenate(pixels), dtype)
    images = ImageCache(base.data, base.mode, np.asarray(index), errors, len(dataset))
    return _with_boxes(dataset, images, rows)


def _disk_images(dataset: Dataset, preprocess: ImageTransform | None, dtype: str, workers: int,
                 cache_dir: str | Path | None) -> DetectionImages:
    keys = [hashlib.sha256(json.dumps([k, _annotation(r.boxes)]).encode()).hexdigest()[:32]
            for k, r in zip(record_keys(dataset), dataset.records, strict=True)]
    images, rows = cached_rows(dataset, preprocess, dtype, cache_dir, keys,
                               _detection_rows(preprocess, workers, DISK_CHUNK),
                               kind="detection")
    assert rows is not None  # a detection pool's rows all carry their boxes
    return _with_boxes(dataset, images, rows)


def _annotation(boxes: Boxes | None) -> Any:
    """A record's boxes as JSON (None: not annotated); part of its disk-cache key."""
    if boxes is None:
        return None
    return [boxes.array().tolist(), boxes.label_array().tolist()]


def _detection_rows(preprocess: ImageTransform | None, workers: int, chunk_size: int
                    ) -> RowProducer:
    """Rows of `chunk_size` images: pixels on the model-input grid and, per row, its boxes
    moved there (``boxes``, ``labels``) and the number too thin to keep (``lost``)."""

    def produce(todo: Dataset) -> Iterator[RowChunk]:
        pixels: list[np.ndarray] = []
        ok: list[int] = []
        rows: list[dict[str, Any]] = []
        errors: dict[int, str] = {}
        shape: tuple[int, ...] | None = None
        for i, prepared in iter_prepared(todo, preprocess, workers):
            record = todo.records[i]
            if isinstance(prepared, UnreadableImage):
                errors[i] = prepared.reason
                log.warning("skipping unreadable image %s: %s", record.ref, prepared.reason)
                continue
            if shape is None:
                shape = prepared.pixels.shape
            elif prepared.pixels.shape != shape:
                raise InvalidDataset(
                    f"{todo.name}: images differ in shape after preprocessing ({shape} and "
                    f"{prepared.pixels.shape} for {record.ref}); add a resize step to the chain"
                )
            truth = record.boxes if record.boxes is not None else Boxes()
            xyxy = boxes_forward(truth.array(), prepared.transforms,
                                 clip_shape=prepared.pixels.shape[1:])
            keep = (((xyxy[:, 2] - xyxy[:, 0]) >= MIN_SIDE)
                    & ((xyxy[:, 3] - xyxy[:, 1]) >= MIN_SIDE))
            pixels.append(prepared.pixels)
            ok.append(i)
            rows.append({"boxes": xyxy[keep].astype(np.float32),  # the disk cache writes them
                         "labels": truth.label_array()[keep].astype(np.int64),  # as JSON lists
                         "lost": int((~keep).sum())})
            if len(pixels) >= chunk_size:
                yield RowChunk(np.stack(pixels), ok, errors, rows)
                pixels, ok, rows, errors = [], [], [], {}
        if pixels or errors:
            x = np.stack(pixels) if pixels else np.empty((0, *(shape or (1, 1, 1))), np.float32)
            yield RowChunk(x, ok, errors, rows)

    return produce


def _with_boxes(dataset: Dataset, images: ImageCache, rows: list[dict[str, Any]]
                ) -> DetectionImages:
    boxes = [torch.as_tensor(np.asarray(r["boxes"], np.float32)).reshape(-1, 4) for r in rows]
    labels = [torch.as_tensor(np.asarray(r["labels"], np.int64)).reshape(-1) for r in rows]
    lost = sum(int(r["lost"]) for r in rows)
    if lost:
        log.warning("%s: %d boxes narrower than %g px on the model-input grid (or cut off by a "
                    "crop) are left out of training", dataset.name, lost, MIN_SIDE)
    return DetectionImages(images, boxes, labels, images.errors, lost)


def detect_cached(model: DetectorModel, data: DetectionImages, k: int, batch_size: int,
                  settings: RunSettings, min_score: float) -> list[Detections]:
    """The model's detections of every cached image on the model-input grid."""
    model.eval()
    out: list[Detections] = []
    for start in range(0, len(data.cache), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data.cache)))
        b, s, lab = detect_batches(model, data.cache.batch(rows).numpy(), k, batch_size,
                                   settings.device)
        for i in range(len(rows)):
            keep = s[i] >= min_score
            out.append(Detections(b[i][keep], s[i][keep], lab[i][keep]))
    return out


class DetectionValidation:
    """The loop's validation: COCO mAP@0.5 (``map50``) and mAP@0.5:0.95 (``map50_95``)."""

    def __init__(self, data: DetectionImages, classes: list[str], k: int, batch_size: int,
                 min_score: float):
        self.data = data
        self.classes = classes
        self.k = k
        self.batch_size = batch_size
        self.min_score = min_score

    def __call__(self, model: DetectorModel, settings: RunSettings) -> dict[str, float]:
        from medsight.evaluate.detection import evaluate_detections

        found = detect_cached(model, self.data, self.k, self.batch_size, settings, self.min_score)
        m = evaluate_detections(self.data.truth(), found, self.classes, ci=False,
                                max_detections=self.k).metrics
        return {"map50": _finite(m["map50"]), "map50_95": _finite(m["map50_95"])}


def _finite(value: Any) -> float:
    return float("nan") if value is None else float(value)


def f1_threshold(truth: list[Boxes], found: list[Detections], n_classes: int, k: int,
                 grid: np.ndarray | None = None) -> tuple[float, float]:
    """The score threshold maximising the mean over classes of F1 at IoU 0.5 (pycocotools'
    matches), and that mean F1; classes without true boxes are left out of the mean."""
    from medsight.evaluate.detection_coco import coco_evaluate

    _, matches = coco_evaluate(truth, found, n_classes, k)
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2) if grid is None else grid
    f1 = np.full((n_classes, len(grid)), np.nan)
    for c, m in enumerate(matches.classes):
        n_true = int(m.n_true.sum())
        if n_true == 0:
            continue
        counted = ~m.ignored[0]
        tp = np.array([(m.matched[0] & counted & (m.scores >= t)).sum() for t in grid])
        fp = np.array([(~m.matched[0] & counted & (m.scores >= t)).sum() for t in grid])
        f1[c] = 2 * tp / np.maximum(2 * tp + fp + (n_true - tp), 1)
    if np.isnan(f1).all():
        return 0.5, float("nan")
    mean = np.nanmean(f1, axis=0)
    best = int(np.argmax(mean))
    return float(grid[best]), float(mean[best])
