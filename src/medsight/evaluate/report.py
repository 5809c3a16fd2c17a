"""The self-contained HTML run report: every plot embedded, readable by a clinician or reviewer.

`ReportData` collects what a run produced; `render_report` turns it into one HTML file with no
external resources (plots are base64 PNGs), so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import base64
import datetime as _dt
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from medsight.evaluate import plots
from medsight.evaluate.detection import DetectionEvaluation

HEADLINE = ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "ppv", "npv", "f1",
            "kappa", "ece", "brier")


@dataclass
class SplitResult:
    """Predictions and metrics of one evaluated split (``test``, ``val``, ``external`` ...)."""

    name: str
    y_true: np.ndarray
    proba: np.ndarray
    metrics: dict[str, Any]
    refs: list[str] = field(default_factory=list)


@dataclass
class DetectionSplit:
    """A detector's evaluation of one split, with its example images (true and predicted boxes
    drawn) as one PNG."""

    name: str
    evaluation: DetectionEvaluation
    examples_png: bytes | None = None


@dataclass
class ReportData:
    """Everything the report shows; optional parts are simply left out when empty."""

    title: str
    task: str
    class_names: list[str]
    positive_class: int | None
    model_label: str
    threshold: float | None
    splits: list[SplitResult]
    detection: list[DetectionSplit] = field(default_factory=list)
    data_summary: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    preprocess_steps: list[str] = field(default_factory=list)
    preprocess_preview_png: bytes | None = None
    misclassified_png: bytes | None = None
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    cv: dict[str, Any] | None = None
    external_vs_internal: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    config_text: str = ""
    notes: list[str] = field(default_factory=list)


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a result."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("medsight", "numpy", "scikit-learn", "scikit-image", "torch", "pydicom"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def split_figures(data: ReportData, split: SplitResult) -> dict[str, bytes]:
    """PNG figures for one split: ROC, PR, confusion matrix and reliability diagram."""
    args = (split.y_true, split.proba, data.task, data.positive_class, data.class_names)
    figs = {"roc": plots.roc_plot(*args), "pr": plots.pr_plot(*args)}
    cm = split.metrics.get("confusion_matrix")
    if cm is not None and data.task != "multilabel":
        figs["confusion"] = plots.confusion_plot(cm, data.class_names)
    if data.task != "multilabel":
        figs["reliability"] = plots.reliability_plot(split.y_true, split.proba, data.task,
                                                     data.positive_class)
    return figs


def render_report(data: ReportData, path: str | Path, figure_dir: str | Path | None = None) -> Path:
    """Write the report to `path`; figures are also saved as PNG files in `figure_dir` if given."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = Path(figure_dir) if figure_dir else None
    if fig_dir:
        fig_dir.mkdir(parents=True, exist_ok=True)

    def embed(png: bytes | None, name: str) -> str | None:
        if png is None:
            return None
        if fig_dir:
            (fig_dir / f"{name}.png").write_bytes(png)
        return "data:image/png;base64," + base64.b64encode(png).decode("ascii")

    splits = []
    for s in data.splits:
        figs = {k: embed(v, f"{s.name}_{k}") for k, v in split_figures(data, s).items()}
        splits.append({
            "name": s.name,
            "n": int(len(s.y_true)),
            "headline": _headline(s.metrics),
            "per_class": s.metrics.get("per_class") or [],
            "figures": figs,
        })
    detection = [_detection_view(d, embed) for d in data.detection]
    env = Environment(loader=PackageLoader("medsight.evaluate", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = _fmt
    html = env.get_template("report.html.j2").render(
        d=data,
        splits=splits,
        detection=detection,
        positive_name=(data.class_names[data.positive_class]
                       if data.positive_class is not None and data.task == "binary" else None),
        curves=embed(plots.curves_plot(data.history), "training_curves") if data.history else None,
        preview=embed(data.preprocess_preview_png, "preprocess_preview"),
        misclassified=embed(data.misclassified_png, "misclassified"),
        versions=versions(),
        created=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    out.write_text(html, encoding="utf-8")
    return out


def _detection_view(split: DetectionSplit, embed: Any) -> dict[str, Any]:
    """What the template shows of one detection split: mAP with CIs, a per-class table (AP,
    counting error with CIs), the PR and count figures and the example images."""
    from medsight.evaluate import detection_plots

    m = split.evaluation.metrics
    ci = m.get("ci", {})
    headline = [{"name": label, "value": m[name], "low": ci.get(name, {}).get("ci_low"),
                 "high": ci.get(name, {}).get("ci_high")}
                for name, label in (("map50", "mAP@0.5"), ("map50_95", "mAP@0.5:0.95"))]
    rows = []
    for c in split.evaluation.classes:
        mae, exact = ci.get("count_mae", {}).get(c, {}), ci.get("count_exact", {}).get(c, {})
        rows.append({
            "class": c, "boxes": m["per_class_ap"][c]["n_boxes"],
            "ap50": m["per_class_ap"][c]["ap50"], "ap50_95": m["per_class_ap"][c]["ap50_95"],
            "true": m["mean_count"][c]["true"], "predicted": m["mean_count"][c]["predicted"],
            "mae": m["count_mae"][c], "mae_low": mae.get("ci_low"), "mae_high": mae.get("ci_high"),
            "exact": m["count_exact"][c], "exact_low": exact.get("ci_low"),
            "exact_high": exact.get("ci_high"),
        })
    figures = {
        "precision-recall": embed(detection_plots.pr_curves_plot(split.evaluation),
                                  f"{split.name}_pr"),
        "counts": embed(detection_plots.counts_plot(split.evaluation), f"{split.name}_counts"),
    }
    return {"name": split.name, "n": m["n"], "n_boxes": m["n_boxes"], "headline": headline,
            "per_class": rows, "threshold": m["score_threshold"], "figures": figures,
            "examples": embed(split.examples_png, f"{split.name}_examples")}


def _headline(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (name, value, ci_low, ci_high) for the headline metrics present in `metrics`."""
    ci = metrics.get("ci", {})
    rows = []
    for name in HEADLINE:
        if name not in metrics or metrics[name] is None:
            continue
        bounds = ci.get(name, {})
        rows.append({"name": name, "value": metrics[name], "low": bounds.get("ci_low"),
                     "high": bounds.get("ci_high")})
    return rows


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)
