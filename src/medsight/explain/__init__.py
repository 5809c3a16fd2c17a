"""Explanations of single predictions: class activation maps, occlusion sensitivity, heatmaps
mapped back onto the original image and drawn over it. numpy only (no torch)."""

from medsight.explain.cam import class_activation_map
from medsight.explain.geometry import HeatmapGeometryUnknown, new_transforms, to_original, upsample
from medsight.explain.occlusion import occlusion_map
from medsight.explain.overlay import image_png, overlay_png

__all__ = [
    "HeatmapGeometryUnknown",
    "class_activation_map",
    "image_png",
    "new_transforms",
    "occlusion_map",
    "overlay_png",
    "to_original",
    "upsample",
]
