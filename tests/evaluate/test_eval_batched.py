"""Weighted (resample) metrics equal scikit-learn on the data repeated by those weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from medsight.evaluate.batched import METRICS, weighted_auc, weighted_metrics
from medsight.evaluate.inputs import check_inputs


def _repeat(w_row: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(w_row)), w_row.astype(int))


def test_weighted_auc_equals_sklearn_on_repeated_samples():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60).astype(bool)
    s = rng.integers(0, 8, 60) / 8.0  # many ties
    w = rng.integers(0, 4, (5, 60)).astype(float)
    got = weighted_auc(w, y, s)
    for b in range(5):
        idx = _repeat(w[b])
        assert got[b] == pytest.approx(skm.roc_auc_score(y[idx], s[idx]))
    assert np.isnan(weighted_auc(np.ones((1, 60)), np.zeros(60, bool), s))[0]


@pytest.mark.parametrize("pos", [0, 1])
def test_binary_resample_metrics_equal_sklearn(pos):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    p = np.clip(0.3 * y + 0.7 * rng.random(80), 0, 1)
    problem = check_inputs(y, np.column_stack([1 - p, p]), "binary", pos, 0.45)
    w = rng.integers(0, 3, (4, 80)).astype(float)
    got, _ = weighted_metrics(problem, w)
    for b in range(4):
        idx = _repeat(w[b])
        yy, pp, pred = y[idx], problem.p_pos[idx], problem.pred[idx]
        assert got["auc"][b] == pytest.approx(skm.roc_auc_score(yy == pos, pp))
        assert got["sensitivity"][b] == pytest.approx(skm.recall_score(yy, pred, pos_label=pos))
        assert got["ppv"][b] == pytest.approx(skm.precision_score(yy, pred, pos_label=pos))
        assert got["kappa"][b] == pytest.approx(skm.cohen_kappa_score(yy, pred))
        assert got["balanced_acc"][b] == pytest.approx(skm.balanced_accuracy_score(yy, pred))
        assert got["brier"][b] == pytest.approx(skm.brier_score_loss(yy == pos, pp))
        assert got["log_loss"][b] == pytest.approx(skm.log_loss(yy, problem.proba[idx]))
    assert set(got) == set(METRICS["binary"])


def test_ordinal_resample_metrics_equal_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 90)
    proba = rng.dirichlet(np.ones(4), 90) + 2 * np.eye(4)[y]
    proba /= proba.sum(axis=1, keepdims=True)
    problem = check_inputs(y, proba, "ordinal")
    w = rng.integers(0, 3, (3, 90)).astype(float)
    got, _ = weighted_metrics(problem, w)
    for b in range(3):
        idx = _repeat(w[b])
        yy, pred = y[idx], problem.pred[idx]
        assert got["auc"][b] == pytest.approx(skm.roc_auc_score(yy, proba[idx], multi_class="ovr"))
        assert got["f1"][b] == pytest.approx(skm.f1_score(yy, pred, average="macro"))
        assert got["kappa"][b] == pytest.approx(
            skm.cohen_kappa_score(yy, pred, weights="quadratic", labels=[0, 1, 2, 3])
        )
        assert got["mae"][b] == pytest.approx(skm.mean_absolute_error(yy, pred))


def test_multilabel_resample_metrics_equal_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (70, 3))
    p = np.clip(0.4 * y + 0.6 * rng.random((70, 3)), 0, 1)
    problem = check_inputs(y, p, "multilabel")
    w = rng.integers(0, 3, (3, 70)).astype(float)
    got, _ = weighted_metrics(problem, w, ["auc", "subset_acc", "f1"])
    assert set(got) == {"auc", "subset_acc", "f1"}
    for b in range(3):
        idx = _repeat(w[b])
        assert got["auc"][b] == pytest.approx(skm.roc_auc_score(y[idx], p[idx]))
        assert got["subset_acc"][b] == pytest.approx(skm.accuracy_score(y[idx], problem.pred[idx]))
        assert got["f1"][b] == pytest.approx(skm.f1_score(y[idx], problem.pred[idx], average="macro"))
