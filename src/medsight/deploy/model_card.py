"""The model card: one self-contained HTML page rendered from a bundle's manifest.

What the model is for, how it was validated (test metrics with confidence intervals, external
results), the data card, the decision threshold and calibration, and its limits. It is written
into every bundle as ``model_card.html`` and reused by the service and the reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CARD_FILE = "model_card.html"
_SHOWN = ("map50", "map50_95", "auc", "acc", "balanced_acc", "sensitivity", "specificity", "ppv",
          "npv", "f1", "mae", "qwk", "ece", "brier")


def render_model_card(manifest: Mapping[str, Any]) -> str:
    """The model card page (HTML, no external resources) for `manifest`."""
    from jinja2 import Environment, PackageLoader, select_autoescape  # only when a bundle is made

    env = Environment(loader=PackageLoader("medsight.deploy", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    return env.get_template("model_card.html.j2").render(
        m=manifest, splits=[(label, metric_rows(s)) for _, label, s in evaluated_splits(manifest)])


def evaluated_splits(manifest: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(short name, title, metrics) of the evaluations a reader should see: the test split (or,
    for a cross-validated run, its pooled out-of-fold predictions), then any external sets."""
    evaluation = manifest.get("evaluation") or {}
    out: list[tuple[str, str, Mapping[str, Any]]] = []
    if "test" in evaluation:
        out.append(("test", "test split", evaluation["test"]))
    elif (evaluation.get("cv") or {}).get("pooled"):
        cv = evaluation["cv"]
        grouped = ", grouped by patient" if cv.get("grouped") else ""
        out.append(("cv", f"{cv.get('k')}-fold cross-validation{grouped} (pooled out-of-fold)",
                    cv["pooled"]))
    out += [("external", f"external: {k}", v) for k, v in (evaluation.get("external") or {}).items()]
    return out


def metric_rows(split: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(metric, value, CI low, CI high) rows of one evaluated split, headline metrics first."""
    ci = split.get("ci") or {}
    rows = []
    for name in _SHOWN:
        if split.get(name) is None:
            continue
        interval = ci.get(name) or {}
        rows.append({"metric": name, "value": split[name], "low": interval.get("ci_low"),
                     "high": interval.get("ci_high")})
    return rows


def summary_lines(manifest: Mapping[str, Any]) -> list[str]:
    """A few plain lines describing a bundle (for `medsight bundle verify`)."""
    model = manifest.get("model") or {}
    thr = manifest.get("threshold") or {}
    inp = manifest.get("input") or {}
    shown = evaluated_splits(manifest)
    lines = [
        f"model: {model.get('name')} {model.get('version')} ({model.get('kind')}, uuid {model.get('uuid')})",
        f"task: {manifest.get('task')}; classes: {', '.join(manifest.get('classes') or [])}"
        + (f"; positive: {manifest.get('positive_class_name')}"
           if manifest.get('positive_class_name') is not None else ""),
        f"input: {inp.get('modality')}, shape {inp.get('shape')} after preprocess",
        f"threshold: {thr.get('value')} ({thr.get('method')})",
        f"runtime: {(manifest.get('runtime') or {}).get('format')}; heatmaps: "
        f"{(manifest.get('heatmap') or {}).get('method') or 'none (a detector draws its boxes)'}",
    ]
    if shown:
        short, _, split = shown[0]
        for row in metric_rows(split)[:4]:
            ci = f" [{row['low']:.3f}, {row['high']:.3f}]" if row["low"] is not None else ""
            lines.append(f"{short} {row['metric']}: {row['value']:.3f}{ci}")
    lines.append(f"files: {len(manifest.get('files') or {})} + manifest, every sha256 verified")
    return lines
