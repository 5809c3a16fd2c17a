"""Intensity steps: windows, presets, DICOM windows, clipping and normalisation."""

from __future__ import annotations

import logging

import numpy as np
import pydicom.multival
import pytest

from medsight.errors import InvalidConfig
from medsight.io.image import Image
from medsight.preprocess import (
    WINDOW_PRESETS,
    Clahe,
    ClipPercentile,
    DicomWindow,
    MinMax,
    Window,
    ZScore,
)


@pytest.mark.parametrize("preset", sorted(WINDOW_PRESETS))
def test_window_presets_map_level_to_half(preset):
    level, width = WINDOW_PRESETS[preset]
    px = np.array([level - width, level - width / 2, level, level + width / 4, level + width / 2,
                   level + 2 * width], dtype=np.float32).reshape(1, 1, 6)
    out = Window(preset=preset)(Image(px)).pixels.ravel()
    np.testing.assert_allclose(out, [0, 0, 0.5, 0.75, 1, 1], atol=1e-6)


def test_common_radiology_preset_values():
    assert WINDOW_PRESETS["lung"] == (-600, 1500)
    assert WINDOW_PRESETS["mediastinum"] == (50, 350)
    assert WINDOW_PRESETS["bone"] == (400, 1800)
    assert WINDOW_PRESETS["brain"] == (40, 80)


def test_window_level_width_on_ct_and_metadata(ct_slice):
    out = Window(level=40, width=400)(ct_slice)
    assert out.pixels.dtype == np.float32 and 0 <= out.pixels.min() and out.pixels.max() <= 1
    hu = ct_slice.pixels
    np.testing.assert_allclose(out.pixels[hu <= -160], 0)
    np.testing.assert_allclose(out.pixels[hu >= 240], 1)
    assert out.metadata["preprocess"][-1] == {"step": "window", "level": 40.0, "width": 400.0,
                                              "preset": None}
    assert "preprocess" not in ct_slice.metadata  # input untouched


def test_window_on_volume():
    vol = Image(np.linspace(-1000, 1000, 2 * 3 * 4 * 5, dtype=np.float32).reshape(1, 3, 4, 10))
    out = Window(preset="brain")(vol)
    assert out.pixels.shape == vol.pixels.shape
    np.testing.assert_allclose(out.pixels, np.clip((vol.pixels - 0) / 80, 0, 1), atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"preset": "kidney"}, {"level": 40}, {"preset": "lung",
                         "level": 1, "width": 2}, {"level": 0, "width": 0}])
def test_window_bad_parameters(kwargs):
    with pytest.raises(InvalidConfig):
        Window(**kwargs)


def test_dicom_window_uses_header_first_value(ct_slice):
    img = ct_slice.with_pixels(ct_slice.pixels)
    img.metadata["window_center"] = [40.0, -600.0]
    img.metadata["window_width"] = [400.0, 1500.0]
    out = DicomWindow()(img)
    np.testing.assert_array_equal(out.pixels, Window(level=40, width=400)(ct_slice).pixels)
    assert out.metadata["preprocess"][-1]["source"] == "header"
    img.metadata["window_center"] = pydicom.multival.MultiValue(float, [40.0, -600.0])
    img.metadata["window_width"] = pydicom.multival.MultiValue(float, [400.0, 1500.0])
    second = DicomWindow(index=1)(img)
    np.testing.assert_array_equal(second.pixels, Window(preset="lung")(ct_slice).pixels)


def test_dicom_window_fallbacks(ct_slice, caplog):
    img = ct_slice.with_pixels(ct_slice.pixels)
    img.metadata = {}
    out = DicomWindow(default=(50, 350))(img)
    np.testing.assert_array_equal(out.pixels, Window(preset="mediastinum")(img).pixels)
    assert out.metadata["preprocess"][-1]["source"] == "default"
    with caplog.at_level(logging.WARNING):
        pct = DicomWindow(percentiles=(1, 99))(img)
    assert "no usable DICOM window" in caplog.text
    rec = pct.metadata["preprocess"][-1]
    lo, hi = np.percentile(img.pixels, [1, 99])
    assert rec["source"] == "percentile"
    assert rec["level"] == pytest.approx((lo + hi) / 2) and rec["width"] == pytest.approx(hi - lo)


def test_clip_percentile():
    px = np.arange(1000, dtype=np.float32).reshape(1, 10, 100)
    out = ClipPercentile(lo=1, hi=99)(Image(px)).pixels
    lo, hi = np.percentile(px, [1, 99])
    assert out.min() == pytest.approx(lo) and out.max() == pytest.approx(hi)
    np.testing.assert_array_equal(out[0, 5], px[0, 5])  # the middle is untouched
    with pytest.raises(InvalidConfig):
        ClipPercentile(lo=50, hi=10)


def test_zscore_per_channel_mean0_std1():
    rng = np.random.default_rng(1)
    px = np.stack([rng.normal(100, 20, (16, 16)), rng.normal(-5, 0.1, (16, 16))])
    out = ZScore()(Image(px)).pixels
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-5)
    glob = ZScore(per_channel=False)(Image(px)).pixels
    assert abs(glob.mean()) < 1e-5 and glob.std() == pytest.approx(1, abs=1e-5)
    assert abs(glob[1].mean()) > 0.5  # channel 1 keeps its offset in global mode


def test_zscore_constant_and_mask_nonzero():
    const = ZScore()(Image(np.full((1, 4, 4), 7.0))).pixels
    assert np.isfinite(const).all() and np.all(const == 0)
    px = np.zeros((1, 10, 10))
    px[0, 2:8, 2:8] = np.arange(36).reshape(6, 6) + 10
    out = ZScore(mask_nonzero=True)(Image(px)).pixels
    inside = out[0, 2:8, 2:8]
    assert np.all(out[0, :2] == 0)
    assert abs(inside.mean()) < 1e-5 and inside.std() == pytest.approx(1, abs=1e-5)


def test_minmax():
    px = np.array([[[-3.0, 1.0, 5.0]]])
    np.testing.assert_allclose(MinMax()(Image(px)).pixels.ravel(), [0, 0.5, 1])
    np.testing.assert_allclose(MinMax(out=(-1, 1))(Image(px)).pixels.ravel(), [-1, 0, 1])
    np.testing.assert_array_equal(MinMax()(Image(np.ones((1, 3, 3)))).pixels, 0)


def test_clahe_raises_local_contrast():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:64, :64]
    px = 100 + 5 * np.sin(xx / 3.0) + rng.normal(0, 0.5, (64, 64)) + yy  # low contrast on a ramp
    out = Clahe(clip_limit=0.03, kernel_size=16)(Image(px[None])).pixels[0]
    assert 0 <= out.min() and out.max() <= 1
    unit = (px - px.min()) / (px.max() - px.min())
    # local (row-wise) contrast grows once the ramp is equalised away
    assert out.std(axis=1).mean() > 2 * unit.std(axis=1).mean()
    vol = Clahe(kernel_size=4)(Image(rng.random((1, 8, 16, 16)))).pixels
    assert vol.shape == (1, 8, 16, 16) and 0 <= vol.min() and vol.max() <= 1
