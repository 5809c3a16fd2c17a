"""Printable HTML reports of predictions: one page per input (image, heatmap overlay, probabilities,
warnings, model-card summary, a "decision support, not a diagnosis" notice) and an index page."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from medsight.deploy.model_card import metric_rows
from medsight.deploy.prediction import Prediction

NOTICE = ("Decision support, not a diagnosis. This result was produced by a statistical model and "
          "must be reviewed by a qualified professional together with the full clinical picture.")
INDEX_FILE = "index.html"


def _env() -> Environment:
    return Environment(loader=PackageLoader("medsight.deploy", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                       lstrip_blocks=True)


def _data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class ReportWriter:
    """Writes one report per input into `folder` as predictions stream in, then `close` writes
    the index; it keeps only one short row per input."""

    folder: Path
    manifest: Mapping[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._env = _env()
        test = (self.manifest.get("evaluation") or {}).get("test") or {}
        self._card = {"model": self.manifest.get("model") or {}, "task": self.manifest.get("task"),
                      "threshold": self.manifest.get("threshold") or {},
                      "intended_use": self.manifest.get("intended_use"),
                      "limitations": self.manifest.get("limitations") or [],
                      "metrics": metric_rows(test)[:6],
                      "modality": (self.manifest.get("input") or {}).get("modality")}

    def add(self, prediction: Prediction) -> Path:
        """Write the page of one prediction (pictures when it has a heatmap); returns its path."""
        name = self._name(prediction.source)
        page = self._env.get_template("prediction_report.html.j2").render(
            p=prediction, card=self._card, notice=NOTICE,
            image=_data_uri(prediction.image_png),
            overlay=_data_uri(prediction.heatmap_png),
            probabilities=sorted(prediction.probabilities.items(), key=lambda kv: -kv[1]))
        path = self.folder / name
        path.write_text(page, encoding="utf-8")
        self.rows.append({"source": prediction.source, "file": name, "label": prediction.label,
                          "confidence": prediction.confidence, "warnings": len(prediction.warnings),
                          "error": None})
        return path

    def add_failure(self, source: str, reason: str) -> None:
        """List an input that could not be predicted (with why) on the index page."""
        self.rows.append({"source": source, "file": None, "label": None, "confidence": None,
                          "warnings": 0, "error": reason})

    def close(self) -> Path:
        """Write the index page; returns its path."""
        page = self._env.get_template("prediction_index.html.j2").render(
            rows=self.rows, card=self._card, notice=NOTICE,
            failed=sum(r["error"] is not None for r in self.rows))
        path = self.folder / INDEX_FILE
        path.write_text(page, encoding="utf-8")
        return path

    def _name(self, source: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).name or "input").strip("._") or "input"
        return f"{len(self.rows) + 1:06d}_{stem[:60]}.html"


__all__ = ["NOTICE", "ReportWriter"]
