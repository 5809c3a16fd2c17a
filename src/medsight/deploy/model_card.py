"""The model card: one self-contained HTML page rendered from a bundle's manifest.

What the model is for, how it was validated (test metrics with confidence intervals, external
results), the data card, the decision threshold and calibration, and its limits. It is written
into every bundle as ``model_card.html`` and reused by the service and the reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

CARD_FILE = "model_card.html"
_SHOWN = ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "ppv", "npv", "f1", "mae",
          "qwk", "ece", "brier")


def render_model_card(manifest: Mapping[str, Any]) -> str:
    """The model card page (HTML, no external resources) for `manifest`."""
    env = Environment(loader=PackageLoader("medsight.deploy", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    evaluation = manifest.get("evaluation") or {}
    splits = [("test", evaluation["test"])] if "test" in evaluation else []
    splits += [(f"external: {k}", v) for k, v in (evaluation.get("external") or {}).items()]
    return env.get_template("model_card.html.j2").render(
        m=manifest, splits=[(label, metric_rows(s)) for label, s in splits],
        cv=evaluation.get("cv"), val=metric_rows(evaluation["val"]) if "val" in evaluation else [])


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
    test = (manifest.get("evaluation") or {}).get("test") or {}
    lines = [
        f"model: {model.get('name')} {model.get('version')} ({model.get('kind')}, uuid {model.get('uuid')})",
        f"task: {manifest.get('task')}; classes: {', '.join(manifest.get('classes') or [])}"
        + (f"; positive: {manifest.get('positive_class_name')}"
           if manifest.get('positive_class_name') is not None else ""),
        f"input: {inp.get('modality')}, shape {inp.get('shape')} after preprocess",
        f"threshold: {thr.get('value')} ({thr.get('method')})",
        f"runtime: {(manifest.get('runtime') or {}).get('format')}; heatmaps: "
        f"{(manifest.get('heatmap') or {}).get('method')}",
    ]
    for row in metric_rows(test)[:4]:
        ci = f" [{row['low']:.3f}, {row['high']:.3f}]" if row["low"] is not None else ""
        lines.append(f"test {row['metric']}: {row['value']:.3f}{ci}")
    lines.append(f"files: {len(manifest.get('files') or {})} + manifest, every sha256 verified")
    return lines
