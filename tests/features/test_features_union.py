"""make_features / register_feature: building unions by name, routing parameters, real images."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from medsight.errors import InvalidConfig
from medsight.features import (
    HOG,
    LBP,
    GlobalStats,
    available_features,
    make_features,
    register_feature,
)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((5, 1, 28, 28)).astype(np.float32)


def test_union_concatenates_extractors_in_order(images):
    union = make_features(["stats", "hog", "lbp", "glcm"])
    out = union.fit_transform(images)
    names = union.get_feature_names_out()
    parts = [GlobalStats(), HOG()]
    n_stats, n_hog = (p.fit(images).transform(images).shape[1] for p in parts)
    assert out.shape == (5, len(names))
    assert names[0] == "stats_mean" and names[n_stats] == "hog_0"
    np.testing.assert_allclose(out[:, n_stats : n_stats + n_hog], HOG().fit_transform(images))
    assert {"stats", "hog", "lbp", "glcm"} <= set(available_features())


def test_parameters_reach_the_right_extractor(images):
    union = make_features(
        ["stats", "hog", "lbp"], hog={"orientations": 4}, lbp__n_points=4, channels="per_channel"
    )
    steps = dict(union.transformer_list)
    assert steps["hog"].orientations == 4 and steps["lbp"].n_points == 4
    assert all(s.channels == "per_channel" for s in steps.values())
    assert make_features("hog", volume="orthogonal").transformer_list[0][1].volume == "orthogonal"
    rgb = np.repeat(images, 3, axis=1)
    assert union.fit(rgb).get_feature_names_out()[0] == "c0_stats_mean"
    # 'volume' goes to the 2D descriptors only; stats has no such parameter
    mixed = make_features(["stats", "lbp"], volume="orthogonal")
    assert dict(mixed.transformer_list)["lbp"].volume == "orthogonal"


@pytest.mark.parametrize(
    "call",
    [
        lambda: make_features("sift"),
        lambda: make_features([]),
        lambda: make_features(["hog", "hog"]),
        lambda: make_features("hog", hog={"orientation": 9}),
        lambda: make_features("hog", lbp__radius=2),
        lambda: make_features("stats", volume="middle"),
        lambda: make_features("hog", hog=9),
    ],
)
def test_bad_requests_raise_invalid_config(call):
    with pytest.raises(InvalidConfig):
        call()


class _MeanOnly(TransformerMixin, BaseEstimator):
    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X).reshape(len(X), -1).mean(axis=1, keepdims=True) * self.scale

    def get_feature_names_out(self, input_features=None):
        return np.array(["test_mean"], dtype=object)


def test_registered_extractors_join_unions(images):
    register_feature("test_mean_only", replace=True)(_MeanOnly)
    union = make_features(["test_mean_only", "stats"], test_mean_only={"scale": 2.0})
    out = union.fit_transform(images)
    assert out[:, 0] == pytest.approx(2 * images.reshape(5, -1).mean(axis=1), rel=1e-5)
    assert union.get_feature_names_out()[0] == "test_mean"
    with pytest.raises(InvalidConfig, match="already registered"):
        register_feature("hog")(_MeanOnly)


def test_union_in_a_pipeline_on_real_breastmnist():
    data = np.load(shared_path("medmnist", "breastmnist.npz"))
    x = data["train_images"][:60].astype(np.float32) / 255.0
    y = data["train_labels"][:60, 0]
    pipe = Pipeline([("features", make_features(["stats", "hog", "lbp", "glcm"],
                                                hog={"pixels_per_cell": 7})),
                     ("scale", StandardScaler())])
    out = pipe.fit_transform(x, y)
    assert out.shape[0] == 60 and np.isfinite(out).all()
    assert len(pipe.get_feature_names_out()) == out.shape[1]
    assert LBP().fit_transform(x[:, None]).sum(axis=1) == pytest.approx(np.ones(60))
