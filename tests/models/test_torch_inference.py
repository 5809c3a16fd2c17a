"""The inference module: `ProbabilityModel` is what `predict_proba` computes, without training code."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_nets

from medsight.data.sources import make_phantoms
from medsight.models.inputs import load_arrays
from medsight.models.torch_classifier import TorchClassifier
from medsight.models.torch_inference import ProbabilityModel, flip_views, link_probabilities

tiny_nets()
pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture(scope="module")
def fitted():
    ds = make_phantoms(n=40, size=16, seed=3)
    clf = TorchClassifier(network="tiny_cnn_test", epochs=1, batch_size=16, schedule="constant",
                          augment="light", tta=True, device="cpu", threads=2, deterministic=True)
    return clf.fit(ds.split("train"), ds.split("val")), ds


def test_probability_model_is_predict_proba(fitted):
    clf, ds = fitted
    test = ds.split("test")
    prob = clf.probability_model()
    assert isinstance(prob, ProbabilityModel) and prob.flips == [(), (-1,)]  # "light": hflip
    x = torch.as_tensor(load_arrays(test, clf.preprocess_).x, dtype=torch.float32)
    with torch.inference_mode():
        got = prob(x).double().numpy()
        with_maps, maps = prob.forward_with_features(x)
    np.testing.assert_allclose(got, clf.predict_proba(test), atol=1e-6)
    np.testing.assert_allclose(with_maps.double().numpy(), got, atol=1e-7)
    assert maps.shape[:2] == (len(test), clf.model_.network.num_features)


def test_flip_views_average_the_link():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(5, 1, 2, 2)
    prob = ProbabilityModel(model, "multiclass", flips=flip_views([-1]))
    manual = 0.5 * (torch.softmax(model(x), 1) + torch.softmax(model(x.flip(-1)), 1))
    assert torch.allclose(prob(x), manual)
    coral = link_probabilities(torch.tensor([[3.0, 0.0, -3.0]]), "ordinal", coral=True)
    assert coral.shape == (1, 4) and torch.allclose(coral.sum(1), torch.ones(1))


def test_importing_inference_does_not_import_training():
    code = ("import sys, medsight.models.torch_inference; "
            "print(sorted(m for m in sys.modules if m.startswith('medsight.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
