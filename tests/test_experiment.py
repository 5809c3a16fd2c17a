"""`medsight train` / `compare` end to end on real data: run folder, metrics, report in a browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import screenshot
from conftest import shared_path
from PIL import Image as PILImage

from medsight.config import load_config
from medsight.errors import InvalidConfig
from medsight.experiment import run_experiment

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "test-artifacts"


def medsight(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medsight.cli", *args], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "160"}, timeout=900)


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npz = shared_path("medmnist", "breastmnist.npz")
    out = tmp_path_factory.mktemp("runs") / "breast"
    done = medsight("train", str(EXAMPLES / "breastmnist_classical.yaml"), "--data", str(npz),
                    "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.xdist_group("breast_run")
def test_train_writes_a_complete_run_folder(breast_run: Path) -> None:
    for name in ("config.yaml", "splits.csv", "metrics.json", "predictions.csv", "report.html",
                 "model/estimator.json"):
        assert (breast_run / name).is_file(), name
    metrics = json.loads((breast_run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["n"] == 156 and set(test) >= {"auc", "acc", "sensitivity", "specificity", "ci"}
    # published MedMNIST v2 auto-sklearn AUC is 0.836; the selected classical model measured 0.880
    assert test["auc"] > 0.85
    assert test["ci"]["auc"]["ci_low"] < test["auc"] < test["ci"]["auc"]["ci_high"]
    # selection used validation AUC, never test: the winner has the best val AUC
    board = metrics["candidates"]
    assert board[0]["model"] == metrics["model"]
    assert board[0]["val auc"] == max(r["val auc"] for r in board)
    preds = pd.read_csv(breast_run / "predictions.csv")
    assert set(preds["split"]) == {"val", "test"} and len(preds) == 78 + 156
    # the report names malignant (label 0) as the positive class
    assert "positive class: <b>malignant</b>" in (breast_run / "report.html").read_text()


@pytest.mark.xdist_group("breast_run")
def test_report_of_a_real_run_renders_in_chromium(breast_run: Path) -> None:
    png = screenshot((breast_run / "report.html").as_uri(), ARTIFACTS / "report_breast.png",
                     height=3000)
    shot = np.asarray(PILImage.open(png).convert("L"), dtype=float)
    assert shot.std() > 20, "a blank page has no contrast"
    rows_with_ink = (shot < 128).any(axis=1).mean()
    assert rows_with_ink > 0.3, "the page should be filled with tables and plots"


@pytest.mark.xdist_group("breast_run")
def test_compare_two_runs_with_paired_tests(breast_run: Path, tmp_path: Path) -> None:
    cfg = load_config(EXAMPLES / "breastmnist_classical.yaml",
                      {"data.source": str(shared_path("medmnist", "breastmnist.npz")),
                       "output": str(tmp_path / "hog_svm")})
    cfg.candidates = [c for c in cfg.candidates if c.name == "hog+svm"]
    run_experiment(cfg)
    done = medsight("compare", str(breast_run), str(tmp_path / "hog_svm"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [r["run"] for r in result["table"]] == ["breast", "hog_svm"]
    (pair,) = result["pairs"]
    assert pair["n"] == 156
    assert 0 <= pair["delong"]["p"] <= 1
    assert pair["delong"]["auc_a"] == pytest.approx(result["table"][0]["auc"]["value"], abs=1e-9)


def test_ct_grouped_cross_validation_run(tmp_path: Path) -> None:
    shared_path("ct_medical_images", "dicom_dir")
    out = tmp_path / "ct"
    done = medsight("train", str(EXAMPLES / "ct_contrast_grouped_cv.yaml"), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    cv = metrics["cv"]
    assert cv["grouped"] is True and len(cv["folds"]) == 5
    # measured: mean AUC 0.945 +- 0.028 over folds (stats + SVM after a mediastinum window)
    assert cv["mean"]["auc"] > 0.85
    preds = pd.read_csv(out / "predictions.csv")
    folds_per_patient = preds.groupby("patient_id")["fold"].nunique()
    assert len(folds_per_patient) == 54 and folds_per_patient.max() == 1
    assert "mean ± sd" in done.stdout


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {source: phantom}\nmodel: {kind: classical, params: {model: svm_rbf}}\n"
                   "evaluation: {n_boots: 10}\n")
    with pytest.raises(InvalidConfig, match="evaluation.n_boots"):
        load_config(bad)
    done = medsight("train", str(bad))
    assert done.returncode == 1 and "n_boots" in done.stderr


def test_unknown_model_parameter_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {source: 'phantom:n=40,size=32'}\n"
                   "model: {kind: classical, params: {model: svm_rbf, kernel_size: 3}}\n")
    done = medsight("train", str(cfg), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "kernel_size" in done.stderr


def test_external_evaluation_sits_beside_the_internal_test(tmp_path: Path) -> None:
    """Train on one phantom cohort, test on another generated with a different seed."""
    cfg = tmp_path / "ext.yaml"
    cfg.write_text(
        "data:\n  source: 'phantom:n=120,size=32,seed=0'\n  external: 'phantom:n=60,size=32,seed=7'\n"
        "preprocess: [{minmax: {}}]\n"
        "model: {kind: classical, params: {model: logistic_regression, features: [hog]}}\n"
        "evaluation: {n_boot: 200}\n"
        f"output: {tmp_path / 'run'}\n")
    result = run_experiment(load_config(cfg))
    metrics = result.metrics
    assert metrics["external"]["n"] == 60
    rows = {r["metric"]: r for r in metrics["external_vs_internal"]}
    assert rows["auc"]["internal"] == pytest.approx(metrics["test"]["auc"])
    assert rows["auc"]["external"] == pytest.approx(metrics["external"]["auc"])
    html = (tmp_path / "run" / "report.html").read_text()
    assert "External vs internal" in html and "Results: external" in html
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert (preds["split"] == "external").sum() == 60


@pytest.mark.parametrize("kfold", [False, True])
def test_select_by_a_lower_is_better_metric_picks_the_smallest(kfold: bool) -> None:
    from types import SimpleNamespace

    from medsight.experiment import _select
    from medsight.train.loop import LoopConfig

    def result(brier: float, auc: float):
        metrics = {"brier": brier, "auc": auc, "acc": 0.5}
        split = SimpleNamespace(metrics=metrics)
        return SimpleNamespace(mean=metrics, sd={"brier": 0.0, "auc": 0.0},
                               splits={"val": split, "test": split})

    results = {"worst": result(0.30, 0.70), "best": result(0.10, 0.60), "mid": result(0.20, 0.90)}
    best, board = _select(results, "brier", kfold)
    assert best == "best" and [r["model"] for r in board] == ["best", "mid", "worst"]
    assert _select(results, "auc", kfold)[0] == "mid"
    assert LoopConfig(monitor="brier").mode == "min" and LoopConfig(monitor="auc").mode == "max"
    assert LoopConfig(monitor="loss").mode == "min"
