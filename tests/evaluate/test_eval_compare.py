"""Paired model comparison: DeLong's test against a brute-force variance, and paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medsight.errors import InvalidDataset
from medsight.evaluate import delong_test, paired_bootstrap
from medsight.evaluate.compare import delong_covariance


def _two_models(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = 1 / (1 + np.exp(-(2.5 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    weak = 1 / (1 + np.exp(-(0.4 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    return y, good, weak


def _brute_force_delong(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    x, z = scores[:, y == 1], scores[:, y == 0]
    psi = (x[:, :, None] > z[:, None, :]) + 0.5 * (x[:, :, None] == z[:, None, :])
    v10 = psi.mean(axis=2)  # per model, per positive
    v01 = psi.mean(axis=1)  # per model, per negative
    m, n = x.shape[1], z.shape[1]
    return np.cov(v10) / m + np.cov(v01) / n


def test_delong_variance_equals_brute_force_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    scores = np.vstack([rng.integers(0, 5, 40) + y, rng.integers(0, 3, 40) + y]).astype(float)
    aucs, cov = delong_covariance(y == 1, scores)
    np.testing.assert_allclose(cov, _brute_force_delong(y, scores), rtol=1e-10)
    assert aucs == pytest.approx([roc_auc_score(y, s) for s in scores])
    res = delong_test(y, scores[0], scores[1])
    z = (aucs[0] - aucs[1]) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert res.z == pytest.approx(z) and res.p == pytest.approx(2 * norm.sf(abs(z)))


def test_identical_scores_give_p_one_and_different_models_small_p():
    y, good, weak = _two_models()
    same = delong_test(y, good, good)
    assert (same.diff, same.z, same.p) == (0.0, 0.0, 1.0)
    res = delong_test(y, good, weak)
    assert res.auc_a == pytest.approx(roc_auc_score(y, good)) and res.diff > 0.2
    assert res.p < 1e-4
    swapped = delong_test(y, weak, good)
    assert swapped.z == pytest.approx(-res.z) and swapped.p == pytest.approx(res.p)
    # relabelled so that the same samples are positive as class 0: the same test
    flipped = delong_test(1 - y, good, weak, positive_class=0)
    assert flipped.auc_a == pytest.approx(res.auc_a) and flipped.p == pytest.approx(res.p)


def test_delong_needs_both_classes():
    with pytest.raises(InvalidDataset, match="2 positive"):
        delong_test([1, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1, 0.0])
    with pytest.raises(InvalidDataset, match="samples"):
        delong_test([1, 0], [0.1], [0.2, 0.3])


def test_paired_bootstrap_difference_interval_and_p_value():
    y, good, weak = _two_models()
    pa, pb = np.column_stack([1 - good, good]), np.column_stack([1 - weak, weak])
    res = paired_bootstrap(y, pa, pb, "auc", n_boot=500, seed=0)
    assert res.metric == "auc"
    assert res.diff == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, weak))
    assert 0 < res.ci_low <= res.diff <= res.ci_high
    assert res.p == pytest.approx(2 / 501) and res.n_valid == 500
    same = paired_bootstrap(y, pa, pa, "sensitivity", n_boot=200)
    assert (same.diff, same.ci_low, same.ci_high, same.p) == (0.0, 0.0, 0.0, 1.0)
    delong = delong_test(y, good, weak)
    assert res.ci_low < delong.diff < res.ci_high
