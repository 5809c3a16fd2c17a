"""Printable HTML reports of predictions: one page per input (image, heatmap overlay, probabilities
-- a detector's: the image with its boxes, counts per class and the counted boxes --, warnings,
model-card summary, a "decision support, not a diagnosis" notice) and an index page, in English
or Simplified Chinese, through one rendering path (`render_report`)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from medsight.deploy.links import web_link
from medsight.deploy.model_card import metric_rows
from medsight.deploy.prediction import Prediction
from medsight.deploy.report_i18n import report_language, strings

NOTICE = strings("en")["notice"]
INDEX_FILE = "index.html"

# One style sheet for both pages, inlined (a report is a single file that must print offline) and
# free of characters HTML escaping would change, so its hash below matches the served bytes.
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; padding: 0 1em; }
.notice { border: 2px solid #b00; background: #fff4f4; padding: .8em 1em; font-weight: 600; }
.warn { border-left: 4px solid #d80; background: #fff8e8; padding: .4em .8em; margin: .3em 0; }
.pictures { display: flex; gap: 1.5em; flex-wrap: wrap; }
.pictures figure { margin: 0; max-width: 100%; }
.pictures img { width: 20em; max-width: 100%; image-rendering: pixelated; border: 1px solid #ccc; }
.pictures figure.wide { flex: 1 1 100%; }
.pictures figure.wide img { width: 100%; image-rendering: auto; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
.decision { font-size: 1.4em; }
meter { width: 12em; max-width: 40vw; }
.error { color: #b00; }
code { word-break: break-all; }
@media print { .pictures img { width: 8cm; } .pictures figure.wide img { width: 100%; } body { margin: 0; } }
"""
assert not set(CSS) & set("<>&'\""), "CSS must pass HTML escaping unchanged"

REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'sha256-"
              + base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
              + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""Content-Security-Policy that lets a served report show its own inline style and data: images
and nothing else (no script runs in a report)."""


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=PackageLoader("medsight.deploy", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                       lstrip_blocks=True)


def _data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _card(manifest: Mapping[str, Any]) -> dict[str, Any]:
    test = (manifest.get("evaluation") or {}).get("test") or {}
    return {"model": manifest.get("model") or {}, "task": manifest.get("task"),
            "threshold": manifest.get("threshold") or {},
            "intended_use": manifest.get("intended_use"),
            "limitations": manifest.get("limitations") or [],
            "metrics": metric_rows(test)[:6],
            "modality": (manifest.get("input") or {}).get("modality")}


def _translator(lang: str):
    words = strings(lang)

    def t(key: str, **values: Any) -> str:
        return words[key].format(**values) if values else words[key]

    def tv(prefix: str, value: Any) -> str:
        """A known value's translation (task, grid, timing name), else the value as written."""
        return words.get(f"{prefix}_{value}", "" if value is None else str(value))

    return t, tv


def _context(lang: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    code = report_language(lang)
    t, tv = _translator(code)
    return {"lang": code, "t": t, "tv": tv, "notice": t("notice"), "card": _card(manifest),
            "css": Markup(CSS)}


def render_report(prediction: Prediction, manifest: Mapping[str, Any], lang: str = "en",
                  record: Mapping[str, Any] | None = None) -> str:
    """One prediction's printable page as HTML text in `lang` ("en" or "zh-CN").

    `record` (optional, for the service) adds a table of its stored facts: keys ``id``,
    ``created``, ``patient_pseudonym``, ``study_date``, ``user`` and ``reviews`` (a list of
    ``{"reviewer", "verdict": "agree"|"disagree", "note", "created"}``) and ``source`` (an image
    from a PACS: ``{"pacs", "study_uid", "series_uid", "sop_uid", "study_url", "results": [{"name",
    "sop_class", "sop_instance"}]}``, the written-back results). Every value is escaped; the study
    becomes a link only when `study_url` is an http(s) URL.
    """
    reviews = list((record or {}).get("reviews") or [])
    source = (record or {}).get("source") or None
    return _env().get_template("prediction_report.html.j2").render(
        p=prediction, image=_data_uri(prediction.image_png),
        overlay=_data_uri(prediction.heatmap_png), annotated=_data_uri(prediction.annotated_png),
        probabilities=sorted(prediction.probabilities.items(), key=lambda kv: -kv[1]),
        counted=[b for b in prediction.boxes or [] if b["score"] >= (prediction.threshold or 0)],
        record=record, reviews=reviews, source=source,
        study_link=web_link(source.get("study_url")) if source else None,
        **_context(lang, manifest))


@dataclass
class ReportWriter:
    """Writes one report per input into `folder` as predictions stream in, then `close` writes
    the index; it keeps only one short row per input."""

    folder: Path
    manifest: Mapping[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    lang: str = "en"

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lang = report_language(self.lang)

    def add(self, prediction: Prediction) -> Path:
        """Write the page of one prediction (pictures when it has a heatmap); returns its path."""
        name = self._name(prediction.source)
        path = self.folder / name
        path.write_text(render_report(prediction, self.manifest, self.lang), encoding="utf-8")
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
        page = _env().get_template("prediction_index.html.j2").render(
            rows=self.rows, failed=sum(r["error"] is not None for r in self.rows),
            **_context(self.lang, self.manifest))
        path = self.folder / INDEX_FILE
        path.write_text(page, encoding="utf-8")
        return path

    def _name(self, source: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).name or "input").strip("._") or "input"
        return f"{len(self.rows) + 1:06d}_{stem[:60]}.html"


__all__ = ["CSS", "NOTICE", "REPORT_CSP", "ReportWriter", "render_report"]
