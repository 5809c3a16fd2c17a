"""compute_metrics against scikit-learn on fixed inputs, for every task; positive class; edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from medsight.data.dataset import Task
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.evaluate import compute_metrics, expected_calibration_error
from medsight.evaluate.calibration import top_label


def _binary_data(seed: int = 0, n: int = 120):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1).round(2)  # rounding makes ties
    return y, np.column_stack([1 - p1, p1])


def _multiclass_data(seed: int = 1, n: int = 150, k: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("pos", [1, 0])
def test_binary_metrics_match_sklearn_for_either_positive_class(pos):
    y, proba = _binary_data()
    m = compute_metrics(y, proba, "binary", positive_class=pos, threshold=0.4)
    pred = np.where(proba[:, pos] >= 0.4, pos, 1 - pos)
    neg = 1 - pos
    assert m["acc"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_acc"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y == pos, proba[:, pos]))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, pos_label=pos))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=neg))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred, pos_label=pos))
    assert m["npv"] == pytest.approx(skm.precision_score(y, pred, pos_label=neg))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, pos_label=pos))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y == pos, proba[:, pos]))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert m["ece"] == pytest.approx(expected_calibration_error(y == pos, proba[:, pos]))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert m["positive_class"] == pos and m["threshold"] == 0.4


def test_breastmnist_style_positive_class_zero_by_hand():
    # label 0 = malignant is the positive class: 3 malignant (2 found), 3 benign (1 false alarm)
    y = np.array([0, 0, 0, 1, 1, 1])
    p_malignant = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    proba = np.column_stack([p_malignant, 1 - p_malignant])
    m = compute_metrics(y, proba, "binary", positive_class=0, class_names=["malignant", "benign"])
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(8 / 9)
    flipped = compute_metrics(y, proba, "binary", positive_class=1)
    assert flipped["sensitivity"] == pytest.approx(m["specificity"])
    assert m["per_class"][0]["class"] == "malignant" and m["per_class"][0]["recall"] == m["sensitivity"]
    one_column = compute_metrics(y, p_malignant, "binary", positive_class=0)
    assert one_column["auc"] == m["auc"] and one_column["sensitivity"] == m["sensitivity"]


def test_binary_threshold_moves_sensitivity():
    y, proba = _binary_data()
    low = compute_metrics(y, proba, "binary", threshold=0.1)
    high = compute_metrics(y, proba, "binary", threshold=0.9)
    assert low["sensitivity"] > high["sensitivity"] and low["specificity"] < high["specificity"]
    assert low["auc"] == high["auc"]


@pytest.mark.parametrize("task", ["multiclass", Task.ORDINAL])
def test_multiclass_and_ordinal_match_sklearn(task):
    y, proba = _multiclass_data()
    m = compute_metrics(y, proba, task)
    pred = proba.argmax(axis=1)
    k = proba.shape[1]
    assert m["acc"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_acc"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, proba, labels=list(range(k))))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    hit, conf = top_label(y, proba)
    assert m["ece"] == pytest.approx(expected_calibration_error(hit, conf))
    cm = skm.confusion_matrix(y, pred)
    spec = [(cm.sum() - cm[c].sum() - cm[:, c].sum() + cm[c, c]) / (cm.sum() - cm[c].sum())
            for c in range(k)]
    assert m["specificity"] == pytest.approx(np.mean(spec))
    assert m["confusion_matrix"] == cm.tolist()
    prec, rec, f1, support = skm.precision_recall_fscore_support(y, pred)
    for c, row in enumerate(m["per_class"]):
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((prec[c], rec[c], f1[c]))
        assert row["support"] == support[c]
        assert row["auc"] == pytest.approx(skm.roc_auc_score(y == c, proba[:, c]))
    if task == "multiclass":
        assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))
        assert "mae" not in m
    else:
        assert m["kappa"] == pytest.approx(
            skm.cohen_kappa_score(y, pred, weights="quadratic", labels=list(range(k)))
        )
        assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))


def test_multiclass_with_an_absent_class_macro_averages_the_present_ones():
    y, proba = _multiclass_data()
    keep = y != 2
    y, proba = y[keep], proba[keep]
    pred = proba.argmax(axis=1)
    m = compute_metrics(y, proba, "multiclass", class_names=["a", "b", "c", "d"])
    present = [0, 1, 3]
    aucs = [skm.roc_auc_score(y == c, proba[:, c]) for c in present]
    assert m["auc"] == pytest.approx(np.mean(aucs))
    assert "['c']" in m["notes"]["auc"] and m["per_class"][2]["auc"] is None
    assert m["ppv"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=np.nan)
    )
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))


def test_multilabel_matches_sklearn_per_label_and_macro():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (100, 3))
    proba = np.clip(0.4 * y + 0.6 * rng.random((100, 3)), 0, 1)
    thr = [0.5, 0.4, 0.6]
    m = compute_metrics(y, proba, "multilabel", threshold=thr, class_names=["x", "y", "z"])
    pred = (proba >= np.array(thr)).astype(int)
    aucs = skm.roc_auc_score(y, proba, average=None)
    assert m["auc"] == pytest.approx(aucs.mean())
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["subset_acc"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["acc"] == pytest.approx(1 - skm.hamming_loss(y, pred))
    mcm = skm.multilabel_confusion_matrix(y, pred)
    assert m["confusion_matrix"] == mcm.tolist()
    for j, row in enumerate(m["per_class"]):
        assert row["auc"] == pytest.approx(aucs[j])
        assert row["support"] == y[:, j].sum() and row["tp"] == mcm[j, 1, 1]
        assert row["precision"] == pytest.approx(skm.precision_score(y[:, j], pred[:, j]))
    assert m["brier"] == pytest.approx(np.mean([skm.brier_score_loss(y[:, j], proba[:, j])
                                                for j in range(3)]))


def test_one_class_present_gives_none_with_reasons_not_a_crash():
    y = np.ones(10, dtype=int)
    p1 = np.linspace(0.6, 0.95, 10)
    m = compute_metrics(y, p1, "binary", positive_class=1, class_names=["malignant", "benign"])
    assert m["auc"] is None and "only class 'benign'" in m["notes"]["auc"]
    assert m["specificity"] is None and "negative" in m["notes"]["specificity"]
    assert m["npv"] is None and m["sensitivity"] == 1.0
    assert m["kappa"] is None and "kappa" in m["notes"]
    json.dumps(m, allow_nan=False)  # strict JSON: no NaN, no numpy types
    nothing_positive = compute_metrics([0, 1, 0, 1], [0.1, 0.3, 0.2, 0.4], "binary")
    assert nothing_positive["ppv"] is None and "threshold 0.5" in nothing_positive["notes"]["ppv"]
    assert nothing_positive["sensitivity"] == 0.0 and nothing_positive["auc"] == 1.0


def test_results_are_plain_json_for_every_task():
    y, proba = _multiclass_data()
    for task in ("multiclass", "ordinal"):
        out = compute_metrics(y, proba, task)
        assert json.loads(json.dumps(out, allow_nan=False)) == out
    y2, p2 = _binary_data()
    out = compute_metrics(y2[:, None], p2, "binary")  # (N, 1) labels as MedMNIST stores them
    assert isinstance(out["auc"], float) and isinstance(out["n"], int)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (([0, 1], [[0.5, 0.5]], "binary"), InvalidDataset),
        (([0, 2], [[0.5, 0.5], [0.2, 0.8]], "binary"), InvalidDataset),
        (([0, 1], [[0.5, 0.6], [0.2, 0.8]], "binary"), InvalidDataset),
        (([0, 1], [[1.5, -0.5], [0.2, 0.8]], "binary"), InvalidDataset),
        (([0, 1], [[np.nan, 1], [0.2, 0.8]], "binary"), InvalidDataset),
        (([0.5, 1], [[0.5, 0.5], [0.2, 0.8]], "binary"), InvalidDataset),
        (([], np.zeros((0, 2)), "binary"), InvalidDataset),
        (([0, 1], [[0.5, 0.5], [0.2, 0.8]], "regression"), InvalidConfig),
        (([[0, 2]], [[0.5, 0.5]], "multilabel"), InvalidDataset),
    ],
)
def test_bad_inputs_raise_medsight_errors(args, error):
    with pytest.raises(error):
        compute_metrics(*args)


def test_bad_options_raise_invalid_config():
    y, proba = _multiclass_data()
    with pytest.raises(InvalidConfig, match="threshold"):
        compute_metrics(y, proba, "multiclass", threshold=0.5)
    with pytest.raises(InvalidConfig, match="positive_class"):
        compute_metrics([0, 1], [0.2, 0.7], "binary", positive_class=2)
    with pytest.raises(InvalidConfig, match="class names"):
        compute_metrics(y, proba, "multiclass", class_names=["a", "b"])
