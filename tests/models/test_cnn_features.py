"""CNN embeddings feed a classical model: ``ClassicalClassifier(features=["cnn"])`` end to end.

A tiny test network is trained for a few epochs on a BreastMNIST subset and saved; its embeddings
(by saved-model folder, or by network name + local weights file) are the features of a logistic
regression that is fitted, evaluated on the official test split, saved and reloaded.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_nets

from medsight.data.sources.medmnist import from_medmnist
from medsight.evaluate.metrics import compute_metrics
from medsight.models.base import load_estimator
from medsight.models.classical import ClassicalClassifier
from medsight.models.torch_classifier import TorchClassifier

pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def breast_cnn(tmp_path_factory):
    """(dataset, train subset, saved TorchClassifier folder, the classifier)."""
    from conftest import shared_path

    ds = from_medmnist(shared_path("medmnist", "breastmnist.npz"))
    train = tiny_nets().subset(ds.split("train"), 240, seed=0)
    clf = TorchClassifier(network="tiny_cnn_test", epochs=6,
                          batch_size=32, lr=1e-2, schedule="cosine", normalize_input=False,
                          preprocess=[{"minmax": {}}], seed=0, deterministic=True, threads=2,
                          device="cpu")
    clf.fit(train, ds.split("val"))
    folder = tmp_path_factory.mktemp("cnn") / "model"
    clf.save(folder)
    return ds, train, folder, clf


def _auc(est, ds) -> float:
    test = ds.split("test")
    return compute_metrics(test.labels, est.predict_proba(test), "binary",
                           positive_class=ds.positive_class)["auc"]


def test_cnn_embeddings_of_a_saved_model_feed_a_classical_model(breast_cnn, tmp_path):
    ds, train, folder, cnn = breast_cnn
    clf = ClassicalClassifier(model="logistic_regression", features=["cnn"],
                              feature_params={"cnn": {"model": str(folder), "device": "cpu"}},
                              preprocess=[{"minmax": {}}], seed=0)
    clf.fit(train, ds.split("val"))

    feats = clf.pipeline_.named_steps["features"]
    names = feats.get_feature_names_out()
    assert len(names) == cnn.num_features_ == 16 and names[0].endswith("cnn_0")
    features = feats.transform(
        np.stack([cnn.preprocess_(ds.image(i)).pixels for i in range(3)]))
    assert np.allclose(features, cnn.embed(ds.subset(range(3))), atol=1e-5)

    # the embedding separates malignant from benign (seeded: 0.795 on the official test split)
    assert _auc(clf, ds) > 0.75

    clf.save(tmp_path / "classical")
    again = load_estimator(tmp_path / "classical")
    test = ds.split("test")
    assert np.allclose(again.predict_proba(test), clf.predict_proba(test))


def test_cnn_features_from_network_name_and_local_weights(breast_cnn, tmp_path):
    ds, train, folder, cnn = breast_cnn
    weights = tmp_path / "tiny.pt"
    torch.save(cnn.model_.network.state_dict(), weights)
    by_weights = ClassicalClassifier(
        model="logistic_regression", features=["cnn"], preprocess=[{"minmax": {}}], seed=0,
        feature_params={"cnn": {"network": "tiny_cnn_test", "weights": str(weights),
                                "device": "cpu"}})
    by_model = ClassicalClassifier(
        model="logistic_regression", features=["cnn"], preprocess=[{"minmax": {}}], seed=0,
        feature_params={"cnn": {"model": str(folder), "device": "cpu"}})
    val = ds.split("val")
    by_weights.fit(train, val)
    by_model.fit(train, val)
    # no input standardisation in the saved model: the same weights give the same features,
    # so the two routes give the same classifier
    assert np.allclose(by_weights.predict_proba(val), by_model.predict_proba(val), atol=1e-6)


def test_cnn_registers_with_the_features_package_without_importing_torch():
    code = ("import sys, medsight.features as f; "
            "print('cnn' in f.available_features(), 'torch' in sys.modules, "
            "any(m.startswith('medsight.models') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
