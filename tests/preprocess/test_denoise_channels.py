"""median / nl_means reduce noise; to_channels converts grey <-> RGB as networks expect."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess import Median, NLMeans, ToChannels


def _clean() -> np.ndarray:
    yy, xx = np.mgrid[:48, :48]
    return ((np.hypot(yy - 24, xx - 24) < 14) * 1.0 + 0.2 * (xx > 30)).astype(np.float32)


def test_median_removes_salt_and_pepper():
    rng = np.random.default_rng(0)
    clean = _clean()
    noisy = clean.copy()
    idx = rng.choice(clean.size, 100, replace=False)
    noisy.flat[idx] = rng.choice([0.0, 3.0], 100)
    out = Median(size=3)(Image(noisy[None])).pixels[0]
    assert np.abs(out - clean).mean() < 0.3 * np.abs(noisy - clean).mean()
    vol = Median()(Image(np.stack([noisy] * 4)[None])).pixels
    assert vol.shape == (1, 4, 48, 48)


def test_nl_means_reduces_gaussian_noise():
    rng = np.random.default_rng(1)
    clean = _clean()
    noisy = clean + rng.normal(0, 0.15, clean.shape).astype(np.float32)
    out = NLMeans(h=0.8)(Image(noisy[None]))
    mse_before = np.mean((noisy - clean) ** 2)
    mse_after = np.mean((out.pixels[0] - clean) ** 2)
    assert mse_after < 0.5 * mse_before
    assert out.metadata["preprocess"][-1]["sigma"][0] == pytest.approx(0.15, rel=0.3)


def test_to_channels():
    grey = Image(np.arange(12, dtype=np.float32).reshape(1, 3, 4), photometric="MONOCHROME2")
    rgb = ToChannels(3)(grey)
    assert rgb.pixels.shape == (3, 3, 4) and rgb.photometric == "RGB"
    assert all(np.array_equal(c, grey.pixels[0]) for c in rgb.pixels)
    red = np.zeros((3, 2, 2), np.float32)
    red[0] = 1.0
    luma = ToChannels(1)(Image(red, photometric="RGB"))
    np.testing.assert_allclose(luma.pixels, 0.299, atol=1e-6)
    assert luma.photometric == "MONOCHROME2"
    rgba = ToChannels(3)(Image(np.ones((4, 2, 2))))
    assert rgba.pixels.shape == (3, 2, 2)
    with pytest.raises(InvalidConfig, match="2 channels"):
        ToChannels(3)(Image(np.ones((2, 2, 2))))


def test_noise_sigma_estimate_is_close_to_truth():
    from medsight.preprocess.denoise import estimate_noise_sigma

    rng = np.random.default_rng(3)
    clean = _clean()
    for sigma in (0.02, 0.1, 0.3):
        est = estimate_noise_sigma(clean + rng.normal(0, sigma, clean.shape))
        assert est == pytest.approx(sigma, rel=0.15)
    assert estimate_noise_sigma(np.zeros((8, 8))) == 0.0
