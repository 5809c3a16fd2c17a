"""torchvision's RetinaNet and Faster R-CNN (ResNet + FPN) behind the detector protocol, for GPUs.

Built with ``weights=None`` (nothing is downloaded); ``backbone_weights`` loads a local
torchvision ResNet checkpoint (e.g. ImageNet) into the trunk, and the registry's ``weights=``
a whole detector checkpoint of the same classes. The model's own resizing is off and its
normalisation the identity: medsight's preprocessing chain sizes the images and the fitted
model standardises them, so boxes stay in model-input pixels. Trunk BatchNorm layers train
(from scratch) instead of torchvision's frozen ones.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from medsight.errors import InvalidConfig
from medsight.models.networks.base import Network
from medsight.models.networks.detection import DetectorNetwork, load_trunk_weights
from medsight.models.networks.registry import register_network
from medsight.models.networks.weights import adapt_input_channels

_ARCHS = ("resnet18", "resnet34", "resnet50")


class _KeepSize(GeneralizedRCNNTransform):
    """torchvision's detector transform without its resize (preprocessing owns image size)."""

    def resize(self, image, target=None):  # noqa: D102 (the torchvision hook)
        return image, target


class TorchvisionDetector(DetectorNetwork):
    """A torchvision detector (``retinanet`` or ``faster_rcnn``) as a `DetectorNetwork`.

    ``forward(x, targets)`` in training mode returns torchvision's loss dict; `detect` runs its
    post-processing (score floor 0.05, class-wise NMS) and pads to ``k`` boxes.
    """

    loss_kind = "torchvision"
    checkpoint_renames = {"backbone.": "model.backbone.", "head.": "model.head.",
                          "rpn.": "model.rpn.", "roi_heads.": "model.roi_heads."}

    def __init__(self, design: str, in_channels: int, num_classes: int, backbone: str,
                 backbone_weights: str | None, detections_per_img: int):
        super().__init__(in_channels, num_classes)
        if backbone not in _ARCHS:
            raise InvalidConfig(f"{design}: backbone must be one of {list(_ARCHS)}, got {backbone!r}")
        trunk = getattr(tvm, backbone)(weights=None)
        if backbone_weights is not None:
            load_trunk_weights(trunk, backbone_weights)
        if in_channels != 3:
            conv = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            with torch.no_grad():
                conv.weight.copy_(adapt_input_channels(trunk.conv1.weight, in_channels))
            trunk.conv1 = conv
        keep = _KeepSize(1, 1, [0.0] * in_channels, [1.0] * in_channels)
        if design == "retinanet":
            body = _resnet_fpn_extractor(trunk, 5, returned_layers=[2, 3, 4],
                                         extra_blocks=LastLevelP6P7(256, 256))
            self.model = RetinaNet(body, num_classes, detections_per_img=detections_per_img)
            self.label_shift = 0
        else:
            body = _resnet_fpn_extractor(trunk, 5)
            # Faster R-CNN's class 0 is the background
            self.model = FasterRCNN(body, num_classes + 1, box_detections_per_img=detections_per_img)
            self.label_shift = 1
        self.model.transform = keep
        self.classifier = nn.Identity()
        self.num_features = 256

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.backbone(x)["0"]

    def forward(self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None):
        """Training: torchvision's loss dict for `targets` (``boxes``, ``labels`` from 0)."""
        if targets is not None:
            targets = [{"boxes": t["boxes"], "labels": t["labels"] + self.label_shift}
                       for t in targets]
        return self.model(list(x), targets)

    def detect(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.model(list(x))
        boxes = x.new_zeros((len(found), k, 4))
        scores = x.new_zeros((len(found), k))
        labels = torch.zeros((len(found), k), dtype=torch.int64, device=x.device)
        for i, d in enumerate(found):
            m = min(k, len(d["scores"]))
            boxes[i, :m] = d["boxes"][:m]
            scores[i, :m] = d["scores"][:m]
            labels[i, :m] = d["labels"][:m] - self.label_shift
        return boxes, scores, labels


@register_network("retinanet_fpn", dims=2, default_size=512, min_size=32, task="detection",
                  description="detector: torchvision RetinaNet, ResNet + FPN (for GPUs)")
def retinanet_fpn(in_channels: int = 3, num_classes: int = 2, backbone: str = "resnet50",
                  backbone_weights: str | None = None, detections_per_img: int = 300) -> Network:
    """torchvision RetinaNet (no downloaded weights; see the module docstring)."""
    return TorchvisionDetector("retinanet", in_channels, num_classes, backbone, backbone_weights,
                               detections_per_img)


@register_network("faster_rcnn_fpn", dims=2, default_size=512, min_size=32, task="detection",
                  description="detector: torchvision Faster R-CNN, ResNet + FPN (for GPUs)")
def faster_rcnn_fpn(in_channels: int = 3, num_classes: int = 2, backbone: str = "resnet50",
                    backbone_weights: str | None = None, detections_per_img: int = 300) -> Network:
    """torchvision Faster R-CNN (no downloaded weights; see the module docstring)."""
    return TorchvisionDetector("faster_rcnn", in_channels, num_classes, backbone, backbone_weights,
                               detections_per_img)
