"""`medsight train CONFIG --data PATH --out DIR` on a detection dataset: a tiny CenterNet on a few
real BCCD smears writes metrics.json (mAP, per-class AP, counts, CIs), box predictions in CSV and
COCO, and a report with the boxes drawn; wrong set-ups are refused with the fix named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import shared_path

from medsight.config import parse_config
from medsight.errors import InvalidConfig
from medsight.experiment import run_experiment

CLASSES = ["RBC", "WBC", "Platelets"]
DETECTOR = {"kind": "detector", "params": {
    "network": "centernet_small", "network_params": {"width": 16, "neck": 32}, "epochs": 2,
    "batch_size": 2, "augment": None, "lr": 3e-3, "schedule": "constant", "device": "cpu",
    "threads": 2, "seed": 0}}


def _external_csv(path: Path) -> Path:
    """Three BCCD test smears as a box CSV (path,x1,y1,x2,y2,label): an 'external' set."""
    from medsight.data.sources import from_voc

    test = from_voc(shared_path("bccd")).split("test")
    rows = [{"path": r.ref, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "label": test.classes[k]}
            for r in test.records[-3:] for (x1, y1, x2, y2), k in zip(r.boxes.xyxy, r.boxes.labels,
                                                                       strict=True)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _config(path: Path, **data) -> Path:
    cfg = {"name": "bccd tiny", "data": {"source": "set by --data", "limit": 4, **data},
           "preprocess": [{"resize": {"size": [96, 128]}}], "model": DETECTOR,
           "evaluation": {"n_boot": 100}}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def bccd_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bccd_run")
    external = _external_csv(root / "external.csv")
    config = _config(root / "bccd.yaml", external=str(external),
                     external_options={"classes": sorted(CLASSES)})
    out = root / "run"
    env = {**os.environ, "COLUMNS": "160"}
    done = subprocess.run([sys.executable, "-m", "medsight.cli", "train", str(config), "--data",
                           str(shared_path("bccd")), "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mAP@0.5" in done.stdout and "WBC count exact" in done.stdout
    return out


def test_detection_run_writes_metrics_predictions_and_report(bccd_run: Path) -> None:
    metrics = json.loads((bccd_run / "metrics.json").read_text())
    assert metrics["task"] == "detection" and metrics["model"] == "centernet_small"
    for split in ("val", "test"):
        m = metrics[split]
        assert m["n"] == 4
        assert 0.0 <= m["map50_95"] <= m["map50"] <= 1.0
        assert set(m["per_class_ap"]) == set(CLASSES)
        assert set(m["count_exact"]) == set(CLASSES) == set(m["count_mae"])
        assert m["ci"]["map50"]["n_valid"] > 0
        assert 0.0 <= m["score_threshold"] <= 1.0
    # BCCD smears hold ~10-20 red cells each: the true counts are the annotations'
    assert metrics["test"]["mean_count"]["RBC"]["true"] > 5
    assert metrics["test"]["n_boxes"] == sum(v["n_boxes"]
                                             for v in metrics["test"]["per_class_ap"].values())

    boxes = pd.read_csv(bccd_run / "predictions.csv")
    assert list(boxes.columns) == ["split", "ref", "label", "score", "x1", "y1", "x2", "y2"]
    assert set(boxes["label"]) <= set(CLASSES)
    assert (boxes["x2"] <= 640).all() and (boxes["y2"] <= 480).all()  # original pixels
    coco = json.loads((bccd_run / "predictions_test.coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(metrics["test"]["per_class_ap"])
    assert len(coco["images"]) == 4
    assert len(coco["annotations"]) == int((boxes["split"] == "test").sum())
    for ann in coco["annotations"][:5]:
        assert set(ann) >= {"image_id", "category_id", "bbox", "score"} and len(ann["bbox"]) == 4

    ext = metrics["external"]
    assert ext["n"] == 3 and ext["n_unreadable"] == 0 and 0.0 <= ext["map50"] <= 1.0
    assert set(boxes["split"]) == {"val", "test", "external"}

    html = (bccd_run / "report.html").read_text()
    assert "Detection results: test (n = 4 images" in html
    assert "Detection results: external (n = 3 images" in html
    assert f"{metrics['test']['map50']:.3f}" in html
    assert (bccd_run / "plots" / "test_examples.png").stat().st_size > 10_000
    assert (bccd_run / "model").is_dir()


def _cfg(tmp_path: Path, **overrides) -> object:
    raw = {"name": "x", "data": {"source": str(shared_path("bccd")), "limit": 2},
           "preprocess": [{"resize": {"size": [96, 128]}}], "model": DETECTOR,
           "evaluation": {"n_boot": 100}, "output": str(tmp_path / "run"), **overrides}
    return parse_config(raw)


def test_kfold_a_classifier_and_a_class_metric_are_refused_with_the_fix(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, data={"source": str(shared_path("bccd")), "split": {"method": "kfold"}})
    with pytest.raises(InvalidConfig, match="k-fold .* not offered for detectors"):
        run_experiment(cfg)
    cfg = _cfg(tmp_path, model={"kind": "classical", "params": {"model": "logistic_regression",
                                                                "features": ["hog"]}})
    with pytest.raises(InvalidConfig, match="does not predict boxes.*use kind 'detector'"):
        run_experiment(cfg)
    cfg = _cfg(tmp_path, evaluation={"select_by": "acc"})
    with pytest.raises(InvalidConfig, match="select_by 'acc' is not a detection metric"):
        run_experiment(cfg)
