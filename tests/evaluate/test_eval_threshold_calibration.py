"""Operating thresholds (Youden, target sensitivity/specificity) and reliability curves / ECE."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from medsight.errors import InvalidConfig, InvalidDataset
from medsight.evaluate import (
    apply_threshold,
    choose_threshold,
    expected_calibration_error,
    reliability_curve,
)


def _data(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + rng.normal(0, 1.2, n))))
    return y, p


def _sens_spec(y, p, thr, pos=1):
    pred = apply_threshold(p, thr, pos)
    return ((pred == pos) & (y == pos)).sum() / (y == pos).sum(), \
        ((pred != pos) & (y != pos)).sum() / (y != pos).sum()


def test_youden_maximises_sensitivity_plus_specificity():
    y, p = _data()
    thr = choose_threshold(y, p, "youden")
    best = max(sum(_sens_spec(y, p, t)) for t in np.unique(p))
    assert sum(_sens_spec(y, p, thr)) == pytest.approx(best)


def test_target_sensitivity_and_specificity_are_met_with_the_best_other_rate():
    y, p = _data()
    thr = choose_threshold(y, p, "target_sensitivity", target=0.9)
    sens, spec = _sens_spec(y, p, thr)
    assert sens >= 0.9
    above = np.unique(p)[np.unique(p) > thr]
    assert _sens_spec(y, p, above[0])[0] < 0.9  # the next higher threshold misses the target
    thr_s = choose_threshold(y, p, "target_specificity", target=0.8)
    assert _sens_spec(y, p, thr_s)[1] >= 0.8
    below = np.unique(p)[np.unique(p) < thr_s]
    assert _sens_spec(y, p, below[-1])[1] < 0.8


def test_positive_class_zero_threshold_on_its_probability():
    y, p1 = _data()
    p0 = 1 - p1
    thr = choose_threshold(y, p0, "target_sensitivity", target=0.85, positive_class=0)
    pred = apply_threshold(p0, thr, positive_class=0)
    assert ((pred == 0) & (y == 0)).sum() / (y == 0).sum() >= 0.85
    assert set(np.unique(pred)) == {0, 1}
    assert apply_threshold([0.2, 0.7], 0.5, positive_class=0).tolist() == [1, 0]


def test_threshold_errors():
    with pytest.raises(InvalidDataset, match="positive"):
        choose_threshold([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(InvalidConfig, match="method"):
        choose_threshold([0, 1], [0.2, 0.9], method="f1")
    with pytest.raises(InvalidConfig, match="target"):
        choose_threshold([0, 1], [0.2, 0.9], method="target_sensitivity", target=1.2)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_curve_matches_sklearn(strategy):
    y, p = _data()
    curve = reliability_curve(y, p, n_bins=8, strategy=strategy)
    true, pred = calibration_curve(y, p, n_bins=8, strategy=strategy)
    filled = curve.counts > 0
    np.testing.assert_allclose(curve.observed[filled], true)
    np.testing.assert_allclose(curve.mean_predicted[filled], pred)
    assert curve.counts.sum() == len(y) and len(curve.edges) == 9


def test_ece_by_hand_and_for_calibrated_predictions():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 0.65])
    # bins (0, .1]: mean p .05, observed .5 -> gap .45 (2 samples); (.6, .7]: |1 - .65| (1);
    # (.9, 1]: |1 - .95| (1)
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.45 + 0.35 + 0.05) / 4)
    rng = np.random.default_rng(1)
    p = rng.random(20000)
    calibrated = (rng.random(20000) < p).astype(int)
    assert expected_calibration_error(calibrated, p) < 0.02
    assert expected_calibration_error(1 - calibrated, p) > 0.4
    d = reliability_curve([0, 1], [0.05, 0.95], n_bins=4).to_dict()
    assert d["mean_predicted"][1] is None and d["counts"] == [1, 0, 0, 1]
    json.dumps(d, allow_nan=False)


def test_calibration_input_errors():
    with pytest.raises(InvalidDataset, match="0/1"):
        expected_calibration_error([0, 2], [0.1, 0.2])
    with pytest.raises(InvalidDataset, match="probabilities"):
        expected_calibration_error([0, 1], [0.1, 1.2])
    with pytest.raises(InvalidConfig, match="strategy"):
        reliability_curve([0, 1], [0.1, 0.2], strategy="kmeans")
