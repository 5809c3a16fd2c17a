"""Validation schemes on real data: BreastMNIST holdout/external, patient-grouped CV on CT DICOM,
and leakage refused unless allowed.

Measured (scikit-learn 1.9): CT contrast, 5-fold CV grouped by patient (54 patients, seed 0),
mediastinum window + 64x64 resize, global statistics + SVM: mean AUC 0.956 (sd 0.020).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_path

from medsight.data.dataset import Dataset
from medsight.data.quality import check_dataset
from medsight.data.sources.dicom_dir import from_dicom_dir
from medsight.data.sources.medmnist import from_medmnist
from medsight.data.splits import holdout
from medsight.errors import InvalidDataset, LeakageError
from medsight.evaluate.metrics import compute_metrics
from medsight.evaluate.schemes import cross_validate, external_evaluate, holdout_evaluate
from medsight.models.classical import ClassicalClassifier

CT_PREPROCESS = [{"window": {"preset": "mediastinum"}}, {"resize": {"size": [64, 64]}}]


def ct_model() -> ClassicalClassifier:
    return ClassicalClassifier("svm_rbf", features=["stats"], preprocess=CT_PREPROCESS)


def fast_model() -> ClassicalClassifier:
    return ClassicalClassifier("logistic_regression", features=["stats"])


@pytest.fixture(scope="module")
def breast() -> Dataset:
    return from_medmnist(shared_path("medmnist", "breastmnist.npz"))


@pytest.fixture(scope="module")
def ct() -> Dataset:
    root = shared_path("ct_medical_images")
    return from_dicom_dir(root / "dicom_dir", labels_csv=root / "overview.csv",
                          label_column="Contrast", path_column="dicom_name", positive="True")


@pytest.fixture(scope="module")
def breast_holdout(breast):
    return holdout_evaluate(lambda: ClassicalClassifier("svm_rbf"), breast, n_boot=200)


@pytest.fixture(scope="module")
def ct_cv(ct):
    return cross_validate(ct_model, ct, k=5, seed=0)


def test_holdout_metrics_predictions_and_json(breast_holdout):
    r = breast_holdout
    assert set(r.splits) == {"val", "test"}
    test = r.test
    assert test.n == 156 and len(set(test.predictions.refs)) == 156
    m = compute_metrics(test.predictions.y_true, test.predictions.proba, "binary",
                        positive_class=0, threshold=r.threshold)
    assert test.metrics["auc"] == pytest.approx(m["auc"]) and test.metrics["auc"] >= 0.77
    assert test.metrics["sensitivity"] == pytest.approx(m["sensitivity"])
    ci = test.metrics["ci"]["auc"]
    assert ci["ci_low"] < test.metrics["auc"] < ci["ci_high"]
    np.testing.assert_array_equal(test.predictions.y_pred, r.estimator.decide(test.predictions.proba))
    assert r.threshold == r.estimator.threshold_ != 0.5  # chosen on val
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["test"]["auc"] == pytest.approx(test.metrics["auc"]) and d["test"]["n"] == 156
    assert "predictions" in r.to_dict(predictions=True)["test"]


def test_identical_image_across_splits_is_leakage_when_images_are_checked(breast):
    # BreastMNIST train #115 and test #76 are the same image (with opposite labels).
    with pytest.raises(LeakageError, match="identical image"):
        holdout_evaluate(fast_model, breast, ci=False, check_images=True)
    report = check_dataset(breast, near_duplicate_threshold=None)
    with pytest.raises(LeakageError):
        holdout_evaluate(fast_model, breast, ci=False, quality_report=report)
    allowed = holdout_evaluate(fast_model, breast, ci=False, quality_report=report,
                               allow_leakage=True)
    assert [f["kind"] for f in allowed.leakage] == ["exact_duplicate"]
    assert allowed.to_dict()["leakage"][0]["splits"] == ["test", "train"]


def test_external_evaluation_side_by_side(breast, breast_holdout):
    same_images = breast.split("test").with_splits([None] * 156)
    same_images.name = "breast-test-again"
    ext = external_evaluate(breast_holdout.estimator, same_images, breast_holdout, n_boot=100)
    rows = {row["metric"]: row for row in ext.comparison}
    assert "n" not in rows and "threshold" not in rows
    assert rows["auc"]["delta"] == pytest.approx(0.0) and rows["acc"]["delta"] == pytest.approx(0)
    d = json.loads(json.dumps(ext.to_dict(), allow_nan=False))
    assert d["external"]["n"] == 156 and d["external_vs_internal"]


def test_external_set_with_other_classes_is_refused(breast_holdout):
    retina = from_medmnist(shared_path("medmnist", "retinamnist.npz"))
    with pytest.raises(InvalidDataset, match="does not match the model"):
        external_evaluate(breast_holdout.estimator, retina)


def test_ct_cross_validation_is_grouped_by_patient(ct, ct_cv):
    r = ct_cv
    assert r.grouped and len(r.folds) == 5
    assert sorted(r.oof.refs) == sorted(rec.ref for rec in ct.records)
    folds_of: dict[str, set[int]] = {}
    for pid, fold in zip(r.oof.patient_ids, r.oof.fold, strict=True):
        folds_of.setdefault(pid, set()).add(int(fold))
    assert len(folds_of) == 54 and all(len(f) == 1 for f in folds_of.values())
    assert r.mean["auc"] >= 0.88  # measured 0.956
    assert r.mean["auc"] == pytest.approx(np.mean([f["auc"] for f in r.folds]))
    assert r.sd["auc"] == pytest.approx(np.std([f["auc"] for f in r.folds], ddof=1))
    assert len(r.table()) == 5 and r.pooled["n"] == 100
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["mean"]["auc"] == pytest.approx(r.mean["auc"]) and len(d["folds"]) == 5


def test_ungrouped_ct_splits_leak_patients(ct):
    ungrouped = holdout(ct, (0.7, 0.3), seed=0, group_by_patient=False)
    with pytest.raises(LeakageError, match="patient"):
        holdout_evaluate(ct_model, ungrouped, ci=False)
    with pytest.raises(LeakageError, match="patient"):
        cross_validate(ct_model, ct, k=5, grouped=False)
    allowed = holdout_evaluate(ct_model, ungrouped, ci=False, allow_leakage=True)
    shared = {f["key"] for f in allowed.leakage if f["kind"] == "patient"}
    train = {r.patient_id for r in ungrouped.records if r.split == "train"}
    test = {r.patient_id for r in ungrouped.records if r.split == "test"}
    assert shared == train & test and shared
    assert "test" in allowed.to_dict() and allowed.to_dict()["leakage"]


def test_external_set_holding_training_patients_is_refused(ct):
    grouped = holdout(ct, (0.7, 0.3), seed=1)
    internal = holdout_evaluate(ct_model, grouped, ci=False)
    assert not internal.leakage
    train_again = grouped.split("train")
    with pytest.raises(LeakageError, match="training split"):
        external_evaluate(internal.estimator, train_again, internal)


def test_cv_with_inner_validation_chooses_fold_thresholds(breast):
    data = breast.split("train").subset(range(240))
    r = cross_validate(fast_model, data, k=3, val_fraction=0.25, seed=0)
    assert not r.grouped and len(r.folds) == 3
    assert all(f["n_train"] == pytest.approx(120, abs=2) for f in r.folds)
    assert all(f["threshold"] != 0.5 for f in r.folds)
    assert len(r.oof) == 240


def test_cv_on_an_ordinal_task_reports_grade_metrics():
    retina = from_medmnist(shared_path("medmnist", "retinamnist.npz")).split("train")
    r = cross_validate(fast_model, retina.subset(range(300)), k=3, seed=0)
    assert r.pooled["threshold"] is None and r.pooled["n"] == 300
    assert {"auc", "kappa", "mae"} <= set(r.mean) and r.mean["auc"] > 0.55
