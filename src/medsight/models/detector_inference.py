"""A fitted detector as functions (no training code): preprocessed batch -> boxes, and back to the
original image's pixels.

`DetectorModel` is what a fitted `TorchDetector` holds: the input standardisation learned on the
training images + a `DetectorNetwork`. `DetectionView` is its decoding function as one module
(``x -> boxes, scores, labels``, top ``max_detections``), the function the ONNX export traces.
`preprocess_with_geometry` runs the saved chain on one record and keeps the index maps the
geometry steps recorded, so `to_original` can map boxes back with `boxes_back`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from medsight.boxes import Detections
from medsight.data.dataset import Dataset
from medsight.errors import UnreadableImage
from medsight.io.image import Image
from medsight.models.torch_inference import TorchModel
from medsight.preprocess.box_geometry import BoxGeometryUnknown, boxes_back

ImageTransform = Callable[[Image], Image]


class DetectorModel(TorchModel):
    """Input standardisation + a `DetectorNetwork`: ``forward`` gives the raw head outputs,
    `detect` the top-`k` boxes in model-input pixel edges (see `networks.detection`)."""

    def forward(self, x: torch.Tensor, *args: Any) -> Any:
        return self.network(self.prepare(x), *args)

    def detect(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.network.detect(self.prepare(x), k)


class DetectionView(nn.Module):
    """``x -> (boxes (N, K, 4), scores (N, K), labels (N, K))`` of a `DetectorModel`, K fixed."""

    def __init__(self, model: DetectorModel, max_detections: int):
        super().__init__()
        self.model = model
        self.max_detections = int(max_detections)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.detect(x, self.max_detections)


@dataclass
class Prepared:
    """One record after preprocessing: pixels (C, H, W) float32, the recorded index maps, and
    the (rows, cols) of the image as read."""

    pixels: np.ndarray
    transforms: list[dict[str, Any]] = field(default_factory=list)
    original_shape: tuple[int, int] = (0, 0)


def preprocess_with_geometry(image: Image, preprocess: ImageTransform | None) -> Prepared:
    """Run `preprocess` on `image`, keeping the geometry maps; BoxGeometryUnknown when a step
    changed the grid without recording how (boxes could not follow it)."""
    original = tuple(int(s) for s in image.spatial_shape)
    if len(original) != 2:
        raise BoxGeometryUnknown(f"detection needs 2D images, got spatial shape {original}")
    before = len(image.metadata.get("geometry", []))
    out = image if preprocess is None else preprocess(image)
    transforms = list(out.metadata.get("geometry", []))[before:]
    expected = tuple(transforms[-1]["out_shape"]) if transforms else original
    if tuple(int(s) for s in out.spatial_shape) != tuple(int(s) for s in expected):
        raise BoxGeometryUnknown(
            f"a preprocessing step turned a {original} image into {tuple(out.spatial_shape)} "
            "without recording its index map, so boxes cannot follow; use resize / pad_to / "
            "center_crop / crop steps for detection"
        )
    return Prepared(np.asarray(out.pixels, dtype=np.float32), transforms,
                    (int(original[0]), int(original[1])))


def iter_prepared(dataset: Dataset, preprocess: ImageTransform | None, workers: int = 1
                  ) -> Iterator[tuple[int, Prepared | UnreadableImage]]:
    """(index, `Prepared` or the UnreadableImage error) for every record, in dataset order."""

    def one(i: int) -> Prepared | UnreadableImage:
        try:
            return preprocess_with_geometry(dataset.image(i), preprocess)
        except UnreadableImage as exc:
            return exc

    if workers <= 1:
        for i in range(len(dataset)):
            yield i, one(i)
        return
    chunk = workers * 8
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(dataset), chunk):
            idx = range(start, min(start + chunk, len(dataset)))
            yield from zip(idx, pool.map(one, idx), strict=True)


def to_original(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, prepared: Prepared,
                min_score: float) -> Detections:
    """One image's decoded model-input boxes (K, 4) -> `Detections` on the image as read,
    keeping those scoring at least `min_score` (padding has score 0)."""
    keep = scores >= max(min_score, 1e-12)
    xyxy = boxes_back(boxes[keep], prepared.transforms, prepared.original_shape)
    return Detections(xyxy, scores[keep], labels[keep])


def detect_batches(model: DetectorModel, x: np.ndarray, k: int, batch_size: int,
                   device: torch.device | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`model.detect` over `x` (N, C, H, W) in batches, in eval mode without gradients."""
    outs: list[Sequence[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))
            if device is not None:
                batch = batch.to(device)
            b, s, lab = model.detect(batch, k)
            outs.append((b.float().cpu().numpy(), s.float().cpu().numpy(), lab.cpu().numpy()))
    return (np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs]),
            np.concatenate([o[2] for o in outs]).astype(np.int64))
