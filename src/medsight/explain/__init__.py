"""Explanations of single predictions: class activation maps, occlusion sensitivity, heatmaps
mapped back onto the original image and drawn over it, heatmaps turned into candidate boxes, and
boxes drawn on images. numpy, scipy and PIL only (no torch); SciPy and PIL load on first use, so
a prediction's cold start loads neither (tests/deploy/test_predictor_imports.py)."""

from medsight.explain.box_overlay import draw_boxes
from medsight.explain.cam import class_activation_map
from medsight.explain.cam_boxes import heatmap_boxes
from medsight.explain.geometry import HeatmapGeometryUnknown, new_transforms, to_original, upsample
from medsight.explain.occlusion import occlusion_map
from medsight.explain.overlay import image_png, overlay_png

__all__ = [
    "HeatmapGeometryUnknown",
    "class_activation_map",
    "draw_boxes",
    "heatmap_boxes",
    "image_png",
    "new_transforms",
    "occlusion_map",
    "overlay_png",
    "to_original",
    "upsample",
]
