"""A cross-validated run (patient-grouped k-fold, phantoms with patient ids) bundles with its
pooled out-of-fold metrics, its patient grouping and the config's model-card statements."""

from __future__ import annotations

from pathlib import Path

from medsight.config import parse_config
from medsight.deploy import create_bundle, open_bundle
from medsight.experiment import run_experiment


def test_kfold_run_bundle_states_cv_metrics_and_patient_grouping(tmp_path: Path) -> None:
    cfg = parse_config({
        "name": "phantom-cv", "data": {"source": "phantom:n=40,size=24,seed=0",
                                       "split": {"method": "kfold", "k": 2}},
        "preprocess": [{"minmax": {}}],
        "model": {"kind": "classical", "params": {"model": "logistic_regression",
                                                  "features": ["stats"]}},
        "evaluation": {"n_boot": 100}, "output": str(tmp_path / "run"),
        "model_card": {"intended_use": "Teaching: phantoms only.",
                       "limitations": ["Never seen a real patient."]}})
    run_experiment(cfg)
    bundle = open_bundle(create_bundle(tmp_path / "run", tmp_path / "cv.msb"))
    m = bundle.manifest
    cv = m["evaluation"]["cv"]
    assert cv["k"] == 2 and "auc" in cv["pooled"] and "test" not in m["evaluation"]
    assert m["data_card"]["counts"]["all"]["total"] == 40
    assert m["data_card"]["patients"]["all"] < 40  # phantom pairs share a patient
    assert "grouped by patient" in m["data_card"]["patient_grouping"]["statement"]
    assert m["input"]["modality"] == "OT"
    assert "2-fold cross-validation, grouped by patient" in bundle.model_card_html
    assert any(line.startswith("cv auc") for line in bundle.summary())
    assert m["intended_use"] == "Teaching: phantoms only."  # from the config's model_card
    assert m["limitations"] == ["Never seen a real patient."]
    assert "Never seen a real patient." in bundle.model_card_html
