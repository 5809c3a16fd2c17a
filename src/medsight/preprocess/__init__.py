"""Per-sample preprocessing steps and `Preprocess`, the one replayable chain of them.

Steps (registered names): window, dicom_window, clip_percentile, zscore, minmax, clahe,
crop_foreground, resize, pad_to, center_crop, median, nl_means, to_channels, align.
Also: split_montage / split_montages (multi-panel images), register / build_template
(alignment) and preview_grid (before/after figure).

Steps import scikit-image, SciPy and SimpleITK inside the code that uses them, and the montage
functions (which build datasets) load on first access, so replaying a simple chain (resize,
minmax, zscore) loads none of them: a prediction's cold start depends on it.
"""

from __future__ import annotations

from typing import Any

from medsight.preprocess.align import Align, build_template, register, save_reference
from medsight.preprocess.base import (
    PreprocessingFailed,
    Step,
    build_step,
    get_step,
    known_steps,
    register_step,
)
from medsight.preprocess.chain import Preprocess
from medsight.preprocess.channels import ToChannels
from medsight.preprocess.crop import CropForeground
from medsight.preprocess.denoise import Median, NLMeans
from medsight.preprocess.geometry import CenterCrop, PadTo, Resize
from medsight.preprocess.intensity import (
    WINDOW_PRESETS,
    Clahe,
    ClipPercentile,
    DicomWindow,
    MinMax,
    Window,
    ZScore,
)
from medsight.preprocess.preview import preview_grid

__all__ = [
    "WINDOW_PRESETS",
    "Align",
    "CenterCrop",
    "Clahe",
    "ClipPercentile",
    "CropForeground",
    "DicomWindow",
    "Median",
    "MinMax",
    "NLMeans",
    "PadTo",
    "Preprocess",
    "PreprocessingFailed",
    "Resize",
    "Step",
    "ToChannels",
    "Window",
    "ZScore",
    "build_step",
    "build_template",
    "find_panels",
    "get_step",
    "known_steps",
    "preview_grid",
    "register",
    "register_step",
    "save_reference",
    "split_montage",
    "split_montages",
]


def __getattr__(name: str) -> Any:
    if name in ("find_panels", "split_montage", "split_montages"):
        from medsight.preprocess import montage

        return getattr(montage, name)
    raise AttributeError(f"module 'medsight.preprocess' has no attribute {name!r}")
