"""The conformance suite every estimator kind runs (parametrised over `models.kinds`).

A new kind joins automatically when it registers; it only adds a tiny-fixture factory to
`TINY` (the test that every kind has one fails until it does). Data: 16 px phantoms, 1 epoch
(detectors: the same phantoms as a detection task, 32 px; their outputs are boxes and counts,
so the probability tests run on `predict_detections` for them).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import tiny_nets

from medsight.data.dataset import Dataset, Record
from medsight.data.sources import make_phantoms
from medsight.errors import NotFittedError
from medsight.models import MedsightEstimator, clone, estimator_class, estimator_kinds, load_estimator

tiny_nets()
pytestmark = pytest.mark.usefixtures("two_torch_threads")

_NET = {"network": "tiny_cnn_test", "epochs": 1, "batch_size": 16, "schedule": "constant",
        "augment": "light", "tta": True, "device": "cpu", "threads": 2, "deterministic": True}

TINY: dict[str, Callable[[], MedsightEstimator]] = {
    "classical": lambda: estimator_class("classical")(
        model="logistic_regression", features=["stats"], preprocess=[{"minmax": {}}]),
    "torch": lambda: estimator_class("torch")(**_NET, preprocess=[{"minmax": {}}]),
    "torch_ensemble": lambda: estimator_class("torch_ensemble")(
        params={**_NET, "preprocess": [{"minmax": {}}]}, n_folds=2),
    "detector": lambda: estimator_class("detector")(
        network_params={"width": 8, "neck": 16}, epochs=1, batch_size=8, augment="detection",
        device="cpu", threads=2, deterministic=True),
}
DETECTORS = {"detector"}


@pytest.fixture(scope="module")
def phantoms() -> dict[str, Dataset]:
    return {"classify": make_phantoms(n=48, size=16, seed=7),
            "detect": make_phantoms(n=24, size=32, seed=7, task="detection")}


@pytest.fixture
def data(phantoms, request) -> Dataset:
    kind = request.node.callspec.params.get("kind") if hasattr(request.node, "callspec") else None
    return phantoms["detect" if kind in DETECTORS else "classify"]


@pytest.fixture(scope="module")
def fitted(phantoms) -> dict[str, MedsightEstimator]:
    """One fitted tiny estimator per kind, fitted on first use."""

    class Lazy(dict):
        def __missing__(self, kind: str) -> MedsightEstimator:
            data = phantoms["detect" if kind in DETECTORS else "classify"]
            self[kind] = est = TINY[kind]().fit(data.split("train"), data.split("val"))
            return est

    return Lazy()


def _outputs(est: MedsightEstimator, dataset: Dataset) -> np.ndarray:
    """What the kind predicts, as one array: probabilities, or for detectors every detection
    (image index, box, score, label) followed by the counts."""
    if est.kind not in DETECTORS:
        return est.predict_proba(dataset)
    rows = [np.column_stack([np.full(len(d), i), d.xyxy, d.scores, d.labels])
            for i, d in enumerate(est.predict_detections(dataset)) if d is not None]
    return np.concatenate([*rows, est.predict(dataset).reshape(-1, 1).repeat(7, 1)])


def test_every_kind_has_a_tiny_fixture():
    assert sorted(TINY) == sorted(estimator_kinds())


@pytest.mark.parametrize("kind", estimator_kinds())
def test_clone_and_params_round_trip(kind):
    est = TINY[kind]()
    params = est.get_params()
    assert clone(est).get_params() == params
    assert type(est)(**params).get_params() == params
    assert est.set_params(**params) is est and est.get_params() == params
    assert set(est.saved_params()) == set(params) - est.run_only


@pytest.mark.parametrize("kind", estimator_kinds())
def test_unfitted_estimator_raises_not_fitted(kind, data, tmp_path):
    est = TINY[kind]()
    with pytest.raises(NotFittedError):
        est.predict_proba(data)
    with pytest.raises(NotFittedError):
        est.predict(data)
    if kind in DETECTORS:
        with pytest.raises(NotFittedError):
            est.predict_detections(data)
    with pytest.raises(NotFittedError):
        est.save(tmp_path / "m")


@pytest.mark.parametrize("kind", estimator_kinds())
def test_fit_save_load_gives_identical_probabilities(kind, fitted, data, tmp_path):
    est = fitted[kind]
    test = data.split("test")
    proba = _outputs(est, test)
    if kind not in DETECTORS:
        assert proba.shape == (len(test), 2) and np.allclose(proba.sum(1), 1)
    loaded = load_estimator(est.save(tmp_path / "m"))
    assert type(loaded) is type(est) and loaded.saved_params() == est.saved_params()
    assert loaded.threshold_ == est.threshold_ and loaded.classes_ == est.classes_
    np.testing.assert_array_equal(_outputs(loaded, test), proba)
    np.testing.assert_array_equal(loaded.predict(test), est.predict(test))


@pytest.mark.parametrize("kind", estimator_kinds())
def test_predict_proba_leaves_the_estimator_unchanged(kind, fitted, data):
    est = fitted[kind]
    before = _snapshot(est)
    _outputs(est, data.split("test"))
    assert _same(_snapshot(est), before)


@pytest.mark.parametrize("kind", estimator_kinds())
def test_concurrent_predict_proba_equals_sequential(kind, fitted, data):
    est = fitted[kind]
    parts = [data.subset(range(i, len(data), 4)) for i in range(4)]
    sequential = [_outputs(est, p) for p in parts]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda p: _outputs(est, p), parts))
    for got, want in zip(concurrent, sequential, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", estimator_kinds())
def test_unreadable_images_give_nan_rows_named_in_a_warning(kind, fitted, data, tmp_path, caplog):
    est = fitted[kind]
    if kind in DETECTORS:  # no probabilities: a None entry and -1 counts (see its own tests)
        missing = Record(str(tmp_path / "missing.png"), None)
        mixed = Dataset([*data.records[:3], missing], data.task, data.classes)
        found = est.predict_detections(mixed)
        assert found[3] is None and all(f is not None for f in found[:3])
        assert (est.predict(mixed)[3] == -1).all() and "missing.png" in caplog.text
        return
    missing = Record(str(tmp_path / "missing.png"), 0)
    mixed = Dataset([*data.records[:3], missing], data.task, data.classes)
    proba = est.predict_proba(mixed)
    assert np.isnan(proba[3]).all() and np.isfinite(proba[:3]).all()
    assert "missing.png" in caplog.text
    only_missing = est.predict_proba(Dataset([missing], data.task, data.classes))
    assert only_missing.shape == (1, 2) and np.isnan(only_missing).all()


def _snapshot(value):
    """A comparable copy of parameters and learned state (tensors by value, the rest pickled)."""
    if isinstance(value, MedsightEstimator):
        return {k: _snapshot(v) for k, v in sorted(vars(value).items())}
    if isinstance(value, torch.nn.Module):
        return {"training": value.training,
                **{k: t.detach().clone() for k, t in value.state_dict().items()}}
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_snapshot(v) for v in value]
    try:
        return pickle.dumps(value)
    except (pickle.PicklingError, TypeError, AttributeError):
        return repr(value)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.device == b.device and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return a == b
