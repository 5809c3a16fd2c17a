"""`Prediction`: what the one prediction path says about one input, with a JSON-ready form that the
CLI, the service and batch jobs all write."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsight.preprocess.base import to_plain


@dataclass
class Prediction:
    """One input's result.

    ``probabilities`` maps class name -> probability (multilabel: each label's own probability);
    ``label`` is the decision (a class name; multilabel: the labels at or above the threshold,
    joined with ``"+"``, ``""`` for none) and ``confidence`` the probability behind it as the
    bundle's calibration gives it. ``threshold`` is the decision threshold used (None for argmax).
    ``warnings`` are never empty silently: out-of-distribution checks and heatmap limits land
    here. ``timings_ms`` holds read / preprocess / checks (OOD) / inference / heatmap / total; ``input`` a
    summary of the image as read; ``model`` the bundle's name, version and UUID. ``heatmap`` (on
    request) is an array on the original image grid in [0, 1], ``heatmap_png`` the overlay and
    ``image_png`` the image alone (for reports).
    """

    source: str
    probabilities: dict[str, float]
    label: str
    confidence: float
    threshold: float | None
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    heatmap_png: bytes | None = field(default=None, repr=False)
    image_png: bytes | None = field(default=None, repr=False)
    heatmap_info: dict[str, Any] | None = None

    def to_dict(self, with_png: bool = False) -> dict[str, Any]:
        """Plain JSON types only; the heatmap array is left out (its PNG as base64 on request)."""
        out: dict[str, Any] = {
            "path": self.source,
            "label": self.label,
            "probabilities": {k: float(v) for k, v in self.probabilities.items()},
            "confidence": float(self.confidence),
            "threshold": None if self.threshold is None else float(self.threshold),
            "warnings": list(self.warnings),
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
            "input": to_plain(self.input),
            "model": to_plain(self.model),
        }
        if self.heatmap_info is not None:
            out["heatmap"] = to_plain(self.heatmap_info)
            if with_png and self.heatmap_png is not None:
                out["heatmap"]["png_base64"] = base64.b64encode(self.heatmap_png).decode("ascii")
        return out

