"""Feature extractors: values against numpy/scipy/skimage; inputs, channels, volumes, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import stats as sps
from skimage.feature import graycomatrix, graycoprops, hog, local_binary_pattern
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from medsight.data.dataset import Record, Sample
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.features import GLCM, HOG, LBP, GlobalStats
from medsight.io.image import Image


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((6, 1, 24, 24)).astype(np.float32)


def test_stats_match_numpy_and_scipy(images):
    x = images[0, 0].astype(np.float64).ravel()
    f = GlobalStats().fit(images)
    row = dict(zip(f.get_feature_names_out(), f.transform(images)[0], strict=True))
    hist = np.histogram(x, bins=64, range=(x.min(), x.max()))[0] / x.size
    hist = hist[hist > 0]
    expected = {
        "stats_mean": x.mean(), "stats_std": x.std(), "stats_min": x.min(), "stats_max": x.max(),
        "stats_p1": np.percentile(x, 1), "stats_p50": np.median(x),
        "stats_p99": np.percentile(x, 99),
        "stats_skewness": sps.skew(x), "stats_kurtosis": sps.kurtosis(x),
        "stats_entropy": -(hist * np.log2(hist)).sum(),
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert len(row) == 14


def test_stats_of_a_constant_image_are_defined():
    feats = GlobalStats().fit_transform(np.full((2, 1, 8, 8), 3.0))
    names = list(GlobalStats().fit(np.zeros((1, 8, 8))).get_feature_names_out())
    assert np.isfinite(feats).all()
    for name in ("stats_skewness", "stats_kurtosis", "stats_entropy", "stats_std"):
        assert feats[0, names.index(name)] == 0.0


def test_every_input_form_gives_the_same_features(images):
    grey = images[:, 0]
    as_images = [Image(px) for px in images]
    as_samples = [Sample(img, Record(ref=f"r{i}")) for i, img in enumerate(as_images)]
    for extractor in (GlobalStats(), HOG(), LBP(), GLCM()):
        ref = clone(extractor).fit_transform(images)
        for form in (grey, as_images, as_samples, list(images)):
            np.testing.assert_allclose(clone(extractor).fit_transform(form), ref, rtol=1e-10)


def test_rgb_uses_luminance_or_every_channel(images):
    grey = images[:, 0]
    rgb_equal = np.repeat(images, 3, axis=1)
    np.testing.assert_allclose(
        GlobalStats().fit_transform(rgb_equal), GlobalStats().fit_transform(grey), rtol=1e-6
    )
    rgb = np.random.default_rng(1).random((3, 3, 16, 16))
    lum = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    np.testing.assert_allclose(GlobalStats().fit_transform(rgb), GlobalStats().fit_transform(lum))
    per = GlobalStats(channels="per_channel").fit(rgb)
    names = per.get_feature_names_out()
    assert len(names) == 3 * 14 and names[0] == "c0_stats_mean" and names[-1] == "c2_stats_entropy"
    np.testing.assert_allclose(per.transform(rgb)[:, 14:28], GlobalStats().fit_transform(rgb[:, 1]))


def test_hog_equals_skimage_and_counts_features(images):
    f = HOG(orientations=8, pixels_per_cell=6, cells_per_block=2).fit(images)
    out = f.transform(images)
    direct = hog(images[2, 0].astype(np.float64), orientations=8, pixels_per_cell=(6, 6),
                 cells_per_block=(2, 2), block_norm="L2-Hys")
    np.testing.assert_allclose(out[2], direct)
    assert out.shape == (6, 3 * 3 * 2 * 2 * 8)  # 24/6 = 4 cells -> 3 blocks per axis
    assert list(f.get_feature_names_out()[:2]) == ["hog_0", "hog_1"]


def test_hog_rejects_images_too_small_and_mismatched_sizes(images):
    with pytest.raises(InvalidConfig, match="too small"):
        HOG(pixels_per_cell=16, cells_per_block=3).fit(images)
    f = HOG().fit(images)
    with pytest.raises(InvalidDataset, match="resize"):
        f.transform(np.zeros((2, 1, 40, 40)))


def test_stats_accept_images_of_different_sizes():
    rng = np.random.default_rng(2)
    imgs = [Image(rng.random(shape)) for shape in ((1, 10, 12), (1, 20, 20), (1, 10, 12))]
    out = GlobalStats().fit_transform(imgs)
    for i, img in enumerate(imgs):
        np.testing.assert_allclose(out[i], GlobalStats().fit_transform([img])[0])


def test_lbp_histogram_equals_skimage_and_sums_to_one():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (20, 20)).astype(np.float64)
    img[0, 0], img[0, 1] = 0, 255  # full range: the min-max quantisation is the identity
    f = LBP(n_points=8, radius=1).fit(img[None])
    out = f.transform(img[None])[0]
    codes = local_binary_pattern(img.astype(np.uint8), 8, 1, "uniform").astype(int)
    np.testing.assert_allclose(out, np.bincount(codes.ravel(), minlength=10) / codes.size)
    assert out.sum() == pytest.approx(1.0)
    assert list(f.get_feature_names_out()[[0, -1]]) == ["lbp_p8_r1_0", "lbp_p8_r1_9"]
    nri = LBP(n_points=8, method="nri_uniform").fit(img[None])
    assert nri.transform(img[None]).shape == (1, 59)


def test_texture_ignores_affine_intensity_changes(images):
    for extractor in (LBP(), GLCM()):
        a = clone(extractor).fit_transform(images)
        b = clone(extractor).fit_transform(images * 3.0 + 7.0)
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_glcm_equals_skimage_on_quantised_image():
    rng = np.random.default_rng(4)
    levels = 8
    img = rng.integers(0, levels, (16, 16))
    img[0, 0], img[0, 1] = 0, levels - 1
    f = GLCM(distances=(1, 2), angles=(0, 90), levels=levels).fit(img[None])
    row = dict(zip(f.get_feature_names_out(), f.transform(img[None])[0], strict=True))
    mat = graycomatrix(img.astype(np.uint8), [1, 2], [0, np.pi / 2], levels=levels,
                       symmetric=True, normed=True)
    assert len(row) == 6 * 2 * 2
    for prop in ("contrast", "homogeneity", "energy", "correlation", "dissimilarity", "ASM"):
        ref = graycoprops(mat, prop)
        assert row[f"glcm_{prop}_d2_a90"] == pytest.approx(ref[1, 1])
        assert row[f"glcm_{prop}_d1_a0"] == pytest.approx(ref[0, 0])
    avg = GLCM(distances=(1, 2), angles=(0, 90), levels=levels, average_angles=True).fit(img[None])
    assert avg.get_feature_names_out()[0] == "glcm_contrast_d1_mean"
    assert avg.transform(img[None])[0, 0] == pytest.approx(graycoprops(mat, "contrast")[0].mean())


def test_glcm_fixed_value_range_differs_from_per_image_scaling():
    img = np.tile(np.linspace(0.4, 0.6, 16), (16, 1))[None]
    per_image = GLCM(props=("contrast",)).fit_transform(img)
    fixed = GLCM(props=("contrast",), value_range=(0.0, 1.0)).fit_transform(img)
    assert fixed.max() < per_image.max()
    flat = GLCM().fit_transform(np.full((1, 8, 8), 5.0))
    assert np.isfinite(flat).all()


def test_volumes_use_all_voxels_or_mid_slices():
    vols = np.random.default_rng(5).random((3, 1, 17, 16, 24))
    np.testing.assert_allclose(
        GlobalStats().fit_transform(vols), GlobalStats().fit_transform(vols.reshape(3, 1, 17, 384))
    )
    np.testing.assert_allclose(HOG().fit_transform(vols), HOG().fit_transform(vols[:, :, 8]))
    ortho = HOG(volume="orthogonal").fit(vols)
    names = ortho.get_feature_names_out()
    out = ortho.transform(vols)
    assert names[0] == "ax0_hog_0" and out.shape[1] == len(names)
    n_ax2 = sum(n.startswith("ax2_") for n in names)
    np.testing.assert_allclose(out[:, -n_ax2:], HOG().fit_transform(vols[:, :, :, :, 12]))


def test_bad_pixels_and_channel_mismatch_are_named(images):
    bad = images.copy()
    bad[3, 0, 2, 2] = np.nan
    with pytest.raises(InvalidDataset, match="row 3"):
        GlobalStats().fit(images).transform(bad)
    img = Image(bad[3], source="scan_007.dcm")
    with pytest.raises(InvalidDataset, match="scan_007.dcm"):
        HOG().fit(images).transform([img])
    per = GlobalStats(channels="per_channel").fit(np.zeros((2, 3, 8, 8)))
    with pytest.raises(InvalidDataset, match="channels"):
        per.transform(np.zeros((2, 1, 8, 8)))
    with pytest.raises(InvalidDataset):
        GlobalStats().fit(np.zeros((4, 4)))
    with pytest.raises(InvalidDataset):
        GlobalStats().fit([])


@pytest.mark.parametrize(
    "extractor",
    [GlobalStats(channels="rgb"), GlobalStats(percentiles=(50, 101)), HOG(orientations=0),
     HOG(pixels_per_cell=(0, 4)), HOG(volume="all"), LBP(method="var"), LBP(radius=0),
     GLCM(props=("shininess",)), GLCM(levels=1), GLCM(value_range=(1.0, 1.0))],
)
def test_bad_parameters_raise_invalid_config(extractor, images):
    with pytest.raises(InvalidConfig):
        extractor.fit(images)


def test_extractors_are_deterministic_clonable_and_picklable(images):
    for extractor in (GlobalStats(), HOG(), LBP(), GLCM()):
        fitted = clone(extractor).fit(images)
        again = pickle.loads(pickle.dumps(fitted))
        np.testing.assert_array_equal(fitted.transform(images), again.transform(images))
        assert fitted.get_params() == extractor.get_params()


def _stripes(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:32, :32]
    theta = rng.uniform(-0.3, 0.3)
    period = rng.uniform(5, 8)
    return np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)


def _blobs(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:32, :32]
    img = np.zeros((32, 32))
    for _ in range(4):
        cy, cx, s = rng.uniform(4, 28), rng.uniform(4, 28), rng.uniform(2, 4)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))
    return img


def test_hog_and_svm_separate_stripes_from_blobs():
    rng = np.random.default_rng(6)
    x = np.stack([_stripes(rng) if i % 2 else _blobs(rng) for i in range(80)])
    x += rng.normal(0, 0.3, x.shape)
    y = np.arange(80) % 2
    feats = HOG(pixels_per_cell=8).fit(x[:40])
    clf = SVC().fit(feats.transform(x[:40]), y[:40])
    auc = roc_auc_score(y[40:], clf.decision_function(feats.transform(x[40:])))
    assert auc > 0.9
