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

    A detector fills ``boxes`` instead of ``probabilities`` (left empty): every box the model
    returned above the bundle's floor score, highest score first, as ``{"label", "score", "box":
    [x1, y1, x2, y2]}`` in pixel edges of the original image; ``counts`` are the boxes per class at
    or above ``threshold`` (the bundle's score threshold, chosen on validation), ``label`` reads
    them in class order (``"12 RBC, 1 WBC, 0 Platelets"``) and ``confidence`` is the highest score
    among the counted boxes (0 when none is). ``annotated_png`` (on request) is the image with the
    counted boxes drawn.
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
    boxes: list[dict[str, Any]] | None = None
    counts: dict[str, int] | None = None
    annotated_png: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        """A prediction back from its `to_dict` form (a stored record): every field but the
        arrays and pictures, which that form leaves out."""
        return cls(source=d.get("path", ""), probabilities=dict(d.get("probabilities") or {}),
                   label=d.get("label", ""), confidence=float(d.get("confidence", 0.0)),
                   threshold=d.get("threshold"), warnings=list(d.get("warnings") or []),
                   timings_ms=dict(d.get("timings_ms") or {}), input=dict(d.get("input") or {}),
                   model=dict(d.get("model") or {}), heatmap_info=d.get("heatmap"),
                   boxes=d.get("boxes"), counts=d.get("counts"))

    @property
    def is_detection(self) -> bool:
        return self.boxes is not None

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
        if self.boxes is not None:
            out["boxes"] = [{"label": b["label"], "score": float(b["score"]),
                             "box": [float(v) for v in b["box"]]} for b in self.boxes]
            out["counts"] = {k: int(v) for k, v in (self.counts or {}).items()}
            if with_png and self.annotated_png is not None:
                out["annotated_png_base64"] = base64.b64encode(self.annotated_png).decode("ascii")
        if self.heatmap_info is not None:
            out["heatmap"] = to_plain(self.heatmap_info)
            if with_png and self.heatmap_png is not None:
                out["heatmap"]["png_base64"] = base64.b64encode(self.heatmap_png).decode("ascii")
        return out

