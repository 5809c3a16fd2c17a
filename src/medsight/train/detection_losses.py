"""Detection losses and the training objective `DetectionObjective` for the `Trainer` loop.

CenterNet: the penalty-reduced pixel-wise focal loss on the class heatmaps (CornerNet's,
alpha 2, beta 4, normalised by the number of objects), plus L1 on the box size (weight 0.1)
and on the centre offset (weight 1) at the centre cells. torchvision detectors compute their
own losses (summed). The objective augments the batch (`medsight.train.augment.BoxAugment`: geometry
moving the boxes, colour), and reads each row's boxes from the lists it was given, since the
loop's targets tensor carries row numbers for detection.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medsight.train.augment import BoxAugment
from medsight.train.detection_targets import BoxList, centernet_targets
from medsight.train.device import RunSettings

SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CornerNet/CenterNet focal loss between heatmap logits and Gaussian targets (peaks 1)."""
    logits = logits.float()
    pos = target.eq(1).float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = (log_p * (1 - p) ** 2 * pos).sum()
    neg_loss = (log_not_p * p**2 * (1 - target) ** 4 * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def centernet_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], boxes: BoxList,
                   labels: BoxList, stride: int) -> torch.Tensor:
    """Focal heatmap loss + 0.1 L1(size) + L1(offset) of a CenterNet's outputs on a batch."""
    heat, size, offset = outputs
    t = centernet_targets(boxes, labels, heat.shape[1], tuple(heat.shape[-2:]), stride)
    t_heat, t_size, t_off, mask = (v.to(heat.device) for v in (t.heat, t.size, t.offset, t.mask))
    loss = focal_heatmap_loss(heat, t_heat)
    m = mask.unsqueeze(1).float()
    objects = mask.sum().clamp(min=1)
    loss = loss + SIZE_WEIGHT * (torch.abs(size.float() - t_size) * m).sum() / objects
    return loss + OFFSET_WEIGHT * (torch.abs(offset.float() - t_off) * m).sum() / objects


def detection_loss(model: nn.Module, x: torch.Tensor, boxes: BoxList, labels: BoxList,
                   settings: RunSettings) -> torch.Tensor:
    """The training loss of a `DetectorModel` on one (augmented) batch."""
    network = getattr(model, "module", model).network  # DistributedDataParallel wraps it
    if network.loss_kind == "torchvision":
        targets = [{"boxes": b.to(x.device).float(), "labels": lab.to(x.device).long()}
                   for b, lab in zip(boxes, labels, strict=True)]
        with settings.autocast():
            parts = model(x, targets)
        return sum(parts.values())
    with settings.autocast():
        outputs = model(x)
    return centernet_loss(outputs, boxes, labels, network.stride)


class DetectionObjective:
    """`Objective` for `Trainer`: ``y`` holds row numbers into `boxes` / `labels` (see module)."""

    def __init__(self, boxes: BoxList, labels: BoxList, augment: BoxAugment, seed: int):
        self.boxes = boxes
        self.labels = labels
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed + 1)

    def start_epoch(self, epoch: int) -> None:
        return None

    def batch_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                   settings: RunSettings) -> torch.Tensor:
        x = settings.to_device(x)
        boxes = [self.boxes[int(r)] for r in y]
        labels = [self.labels[int(r)] for r in y]
        x, boxes, labels = self.augment(x, boxes, labels, self.generator)
        fmt = settings.memory_format(2)
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)
        return detection_loss(model, x, boxes, labels, settings)

    def end_epoch(self) -> dict[str, Any]:
        return {}

    def generators(self) -> dict[str, torch.Generator]:
        return {"augment": self.generator}
