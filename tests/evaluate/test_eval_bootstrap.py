"""Bootstrap intervals: contain the estimate, shrink with n, respect strata and patient groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medsight.errors import InvalidConfig, InvalidDataset
from medsight.evaluate import bootstrap_ci, compute_metrics, metrics_with_ci
from medsight.evaluate.bootstrap import resample_weights


def _scores(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    return y, np.column_stack([1 - p, p])


def test_interval_contains_the_estimate_and_shrinks_with_more_samples():
    widths = []
    for n in (100, 2000):
        y, proba = _scores(n)
        for name in ("auc", "acc", "sensitivity", "f1"):
            point, low, high = bootstrap_ci(y, proba, name, n_boot=500, seed=1)
            assert low <= point <= high
        point, low, high = bootstrap_ci(y, proba, "auc", n_boot=500, seed=1)
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5  # ~ sqrt(20) = 4.5 in theory


def test_named_metric_equals_sklearn_callable_on_the_same_resamples():
    y, proba = _scores(150)
    named = bootstrap_ci(y, proba, "auc", n_boot=100, seed=3)
    called = bootstrap_ci(y, proba, lambda t, p: roc_auc_score(t, p[:, 1]), n_boot=100, seed=3)
    assert named == pytest.approx(called)
    assert bootstrap_ci(y, proba, "auc", n_boot=100, seed=3) == named
    assert bootstrap_ci(y, proba, "auc", n_boot=100, seed=4) != named


def test_stratified_resamples_keep_class_counts():
    y = np.array([0] * 30 + [1] * 5)
    for w in resample_weights(len(y), 50, seed=0, strata=y):
        assert (w[:, y == 1].sum(axis=1) == 5).all() and (w.sum(axis=1) == 35).all()
    # unstratified resamples sometimes lose the rare class: AUC then undefined and left out
    y2 = np.array([0] * 10 + [1] * 2)
    proba = np.column_stack([1 - np.linspace(0, 1, 12), np.linspace(0, 1, 12)])
    out = metrics_with_ci(y2, proba, "binary", names=["auc"], n_boot=300, stratified=False)
    assert out["auc"]["n_valid"] < 300
    strat = metrics_with_ci(y2, proba, "binary", names=["auc"], n_boot=300)
    assert strat["auc"]["n_valid"] == 300


def test_groups_move_together_and_widen_the_interval_of_duplicated_images():
    y, proba = _scores(200, seed=6)
    patients = np.arange(200)
    # every patient imaged 4 times: naive resampling of images treats them as 800 independent
    y4, proba4, groups4 = np.repeat(y, 4), np.repeat(proba, 4, axis=0), np.repeat(patients, 4)
    for w in resample_weights(len(y4), 20, seed=0, strata=y4, groups=groups4):
        assert (w.reshape(20, 200, 4).std(axis=2) == 0).all()
    _, lo_naive, hi_naive = bootstrap_ci(y4, proba4, "auc", n_boot=400)
    _, lo_group, hi_group = bootstrap_ci(y4, proba4, "auc", n_boot=400, groups=groups4)
    _, lo_single, hi_single = bootstrap_ci(y, proba, "auc", n_boot=400)
    assert hi_group - lo_group > 1.5 * (hi_naive - lo_naive)
    assert hi_group - lo_group == pytest.approx(hi_single - lo_single, rel=0.25)


def test_metrics_with_ci_shape_and_compute_metrics_ci():
    y, proba = _scores(120)
    out = metrics_with_ci(y, proba, "binary", positive_class=0, n_boot=100)
    assert list(out)[:2] == ["auc", "acc"] and set(out["auc"]) == {"value", "ci_low", "ci_high",
                                                                     "n_valid"}
    full = compute_metrics(y, proba, "binary", positive_class=0, n_boot=100)
    assert full["ci"]["auc"] == out["auc"] and set(full["ci"]) >= {"ece", "brier", "kappa"}
    json.dumps(full, allow_nan=False)
    rng = np.random.default_rng(0)
    yk = rng.integers(0, 3, 90)
    pk = rng.dirichlet(np.ones(3), 90)
    assert set(metrics_with_ci(yk, pk, "ordinal", n_boot=50)) == {"auc", "acc", "balanced_acc",
                                                                  "kappa", "mae"}


def test_bad_arguments():
    y, proba = _scores(30)
    with pytest.raises(InvalidConfig, match="n_boot"):
        bootstrap_ci(y, proba, "auc", n_boot=0)
    with pytest.raises(InvalidConfig, match="alpha"):
        bootstrap_ci(y, proba, "auc", alpha=1.5)
    with pytest.raises(InvalidConfig, match="unknown metric"):
        bootstrap_ci(y, proba, "mae")
    with pytest.raises(InvalidDataset, match="groups"):
        bootstrap_ci(y, proba, "auc", groups=[1, 2, 3])
