"""The HTML report: self-contained, complete, and rendered by a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from browser import screenshot
from PIL import Image as PILImage

from medsight.evaluate import plots
from medsight.evaluate.report import ReportData, SplitResult, render_report

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _fake_split(rng: np.random.Generator, n: int = 120) -> SplitResult:
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    proba = np.stack([1 - p1, p1], axis=1)
    pred = (p1 >= 0.5).astype(int)
    cm = [[int(((y == a) & (pred == b)).sum()) for b in (0, 1)] for a in (0, 1)]
    metrics = {"auc": 0.81, "acc": 0.74, "sensitivity": 0.7, "confusion_matrix": cm,
               "ci": {"auc": {"ci_low": 0.73, "ci_high": 0.88}},
               "per_class": [{"class": "benign", "recall": 0.7}, {"class": "malignant", "recall": 0.8}]}
    return SplitResult("test", y, proba, metrics)


def test_report_is_self_contained_and_complete(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grid = plots.image_grid([rng.random((1, 16, 16)) for _ in range(4)], ["a", "b", "c", "d"])
    data = ReportData(
        title="unit report", task="binary", class_names=["benign", "malignant"], positive_class=1,
        model_label="hog+svm_rbf", threshold=0.42, splits=[_fake_split(rng)],
        data_summary={"counts": {"train": {"benign": 10, "malignant": 5}}},
        preprocess_steps=["resize(size=[28, 28])"], preprocess_preview_png=grid,
        misclassified_png=grid, history=[{"epoch": 1, "loss": 1.0, "val_metric": 0.6},
                                         {"epoch": 2, "loss": 0.7, "val_metric": 0.7}],
        cv={"columns": ["auc"], "rows": [{"fold": 1, "auc": 0.8}], "mean": {"auc": 0.8},
            "sd": {"auc": 0.0}},
        external_vs_internal=[{"metric": "auc", "internal": 0.81, "external": 0.7, "change": -0.11}],
        config_text="name: unit",
    )
    out = render_report(data, tmp_path / "report.html", figure_dir=tmp_path / "plots")
    html = out.read_text()
    assert "http://" not in html and "https://" not in html, "report must not load external resources"
    images = re.findall(r'<img src="data:image/png;base64,', html)
    # roc, pr, confusion, reliability, preview, misclassified, training curves
    assert len(images) == 7
    for section in ("Data", "Preprocessing", "Results: test", "Misclassified", "Cross-validation",
                    "External vs internal", "Training", "Versions"):
        assert section in html
    assert "positive class: <b>malignant</b>" in html
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {"test_roc.png", "test_confusion.png"}


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = ReportData(title="browser report", task="binary", class_names=["a", "b"],
                      positive_class=1, model_label="m", threshold=0.5, splits=[_fake_split(rng)])
    out = render_report(data, tmp_path / "report.html")
    png = screenshot(out.as_uri(), ARTIFACTS / "report_unit.png", height=1600)
    shot = np.asarray(PILImage.open(png).convert("L"), dtype=float)
    assert shot.shape == (1600, 1200)
    # a rendered page with plots has real contrast, not a blank or error page
    assert shot.std() > 20 and (shot < 100).mean() > 0.005
