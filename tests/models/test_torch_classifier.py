"""TorchClassifier under the estimator protocol: learning, tasks, 3D, save/load, TTA, ensembles.

Short runs of tiny test networks (registered by tests/train/tiny_nets.py) on small subsets of
the real MedMNIST files, plus one step of a real registered network, so this file takes seconds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_nets

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.sources.medmnist import from_medmnist
from medsight.errors import InvalidConfig
from medsight.evaluate.metrics import compute_metrics
from medsight.models.base import load_estimator
from medsight.models.inputs import load_arrays
from medsight.models.torch_classifier import TorchClassifier
from medsight.models.torch_ensemble import TorchEnsemble
from medsight.models.torch_inference import TorchModel

subset = tiny_nets().subset


pytestmark = pytest.mark.usefixtures("two_torch_threads")


@pytest.fixture
def breast(breastmnist):
    return from_medmnist(breastmnist)


def _medmnist(shared_data: Path, name: str) -> Dataset:
    path = shared_data / "medmnist" / name
    if not path.is_file():
        pytest.skip(f"real data not found at {path} (see shared/data/MANIFEST.md)")
    return from_medmnist(path)


def _params(**kw):
    base = dict(network="tiny_cnn_test", epochs=2, batch_size=32, lr=1e-2, schedule="constant",
                seed=0, deterministic=True, threads=2, device="cpu")
    return {**base, **kw}


def test_learns_breastmnist_and_picks_a_threshold(breast):
    train = subset(breast.split("train"), 200)
    val, test = breast.split("val"), breast.split("test")
    clf = TorchClassifier(**_params(epochs=8, schedule="cosine", seed=1, class_weight="balanced",
                                    label_smoothing=0.05))
    clf.fit(train, val)
    losses = [h["loss"] for h in clf.history_]
    assert losses[-1] < 0.9 * losses[0]
    assert clf.best_metric_ == max(h["val_auc"] for h in clf.history_) > 0.7
    proba = clf.predict_proba(test)
    assert proba.shape == (156, 2) and np.allclose(proba.sum(1), 1)
    auc = compute_metrics(test.labels, proba, "binary", positive_class=0)["auc"]
    assert auc > 0.65
    assert 0 < clf.threshold_ < 1 and clf.threshold_ != 0.5  # Youden on the validation split
    assert set(np.unique(clf.predict(test))) <= {0, 1}


def test_a_real_registered_network_trains_a_step(breast):
    train = subset(breast.split("train"), 12)
    clf = TorchClassifier(**_params(network="alexnet_small", epochs=1, batch_size=6))
    clf.fit(train)
    assert np.isfinite(clf.history_[0]["loss"])
    assert clf.predict_proba(train).shape == (len(train), 2)
    assert clf.embed(train).shape == (len(train), clf.model_.network.num_features)


def test_save_load_gives_identical_predictions_and_keeps_preprocessing(breast, tmp_path):
    train, val = subset(breast.split("train"), 80), breast.split("val")
    pre = [{"resize": {"size": [24, 24]}}]
    clf = TorchClassifier(**_params(preprocess=pre, augment="light", tta=True)).fit(train, val)
    assert clf.input_shape_ == [1, 24, 24]
    clf.save(tmp_path / "m")
    loaded = load_estimator(tmp_path / "m")
    assert isinstance(loaded, TorchClassifier)
    assert loaded.preprocess_.fingerprint() == clf.preprocess_.fingerprint()
    assert np.array_equal(loaded.predict_proba(val), clf.predict_proba(val))
    assert np.array_equal(loaded.embed(val), clf.embed(val))
    assert loaded.threshold_ == clf.threshold_ and loaded.best_epoch_ == clf.best_epoch_
    assert len(loaded.history_) == 2 and loaded.saved_params() == clf.saved_params()


def test_tta_averages_the_allowed_flips(breast):
    train = subset(breast.split("train"), 60)
    clf = TorchClassifier(**_params(epochs=1, tta=["hflip"])).fit(train)
    x = torch.from_numpy(load_arrays(train).x)
    model = clf.model_.eval()
    with torch.no_grad():
        manual = 0.5 * (torch.softmax(model(x), 1) + torch.softmax(model(x.flip(-1)), 1))
    assert np.allclose(clf.predict_proba(train), manual.numpy(), atol=1e-6)
    plain = TorchClassifier(**_params(epochs=1)).fit(train)
    assert not np.allclose(plain.predict_proba(train), manual.numpy(), atol=1e-6)


def test_unreadable_images_give_nan_rows_and_are_reported(breast, tmp_path, caplog):
    train = subset(breast.split("train"), 40)
    clf = TorchClassifier(**_params(epochs=1)).fit(train)
    missing = str(tmp_path / "missing.png")
    mixed = Dataset([*train.records[:3], Record(missing, 1)], train.task, train.classes,
                    positive_class=0)
    proba = clf.predict_proba(mixed)
    assert np.isnan(proba[3]).all() and np.isfinite(proba[:3]).all()
    assert "1 of 4 images were unreadable" in caplog.text and missing in caplog.text


def test_multilabel_task_trains(breast):
    base = subset(breast.split("train"), 60)
    x = load_arrays(base).x
    bright = x.mean(axis=(1, 2, 3)) > np.median(x.mean(axis=(1, 2, 3)))
    records = [replace(r, label=(int(r.label == 0), int(b)))
               for r, b in zip(base.records, bright, strict=True)]
    ds = Dataset(records, Task.MULTILABEL, ["malignant", "bright"], name="ml")
    clf = TorchClassifier(**_params(epochs=2, class_weight="balanced", monitor="auc"))
    clf.fit(ds, ds)
    proba = clf.predict_proba(ds)
    assert proba.shape == (60, 2) and ((proba >= 0) & (proba <= 1)).all()
    assert not np.allclose(proba.sum(1), 1)  # independent sigmoids
    assert clf.predict(ds).shape == (60, 2)
    assert np.isfinite(clf.history_[-1]["val_auc"])


@pytest.mark.parametrize("ordinal", ["coral", "ce"])
def test_ordinal_task_trains_and_returns_class_probabilities(shared_data, ordinal):
    retina = _medmnist(shared_data, "retinamnist.npz")
    train = subset(retina.split("train"), 60)
    val = retina.split("val").subset(range(40))
    clf = TorchClassifier(**_params(epochs=1, ordinal=ordinal)).fit(train, val)
    assert clf.data_channels_ == 3
    if ordinal == "coral":
        assert clf.model_.network.num_classes == 1 and clf.model_.head is not None
    proba = clf.predict_proba(val)
    assert proba.shape == (40, 5) and (proba >= 0).all() and np.allclose(proba.sum(1), 1)
    assert "val_mae" in clf.history_[0]


def test_3d_volumes_train_on_adrenalmnist3d(shared_data):
    adrenal = _medmnist(shared_data, "adrenalmnist3d.npz")
    train = subset(adrenal.split("train"), 24)
    val = adrenal.split("val").subset(range(16))
    clf = TorchClassifier(**_params(network="tiny_cnn3d_test", epochs=1, batch_size=8,
                                    augment={"preset": "volume", "dflip": True}, tta=True))
    clf.fit(train, val)
    assert clf.input_shape_ == [1, 28, 28, 28]
    proba = clf.predict_proba(val)
    assert proba.shape == (16, 2) and np.isfinite(proba).all()
    assert clf.embed(val).shape == (16, clf.model_.network.num_features)


def test_grey_images_feed_a_three_channel_network_and_options_run(breast):
    train = subset(breast.split("train"), 40)
    clf = TorchClassifier(**_params(epochs=1, in_channels=3, precision="bf16",
                                    channels_last=True, optimizer="sgd",
                                    augment={"hflip": True, "cutmix": 1.0}))
    clf.fit(train)
    assert clf.model_.network.in_channels == 3 and clf.data_channels_ == 1
    assert np.isfinite(clf.history_[0]["loss"])
    assert np.isfinite(clf.predict_proba(train)).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"optimizer": "rmsprop"}, "rmsprop"),
    ({"schedule": "linear"}, "schedule"),
    ({"augment": {"flip": True}}, "augmentation option"),
    ({"tta": ["rotate"]}, "tta"),
])
def test_bad_parameters_are_stored_as_given_and_fail_at_fit(kwargs, match):
    clf = TorchClassifier(**kwargs)
    assert {k: clf.get_params()[k] for k in kwargs} == kwargs
    with pytest.raises(InvalidConfig, match=match):
        clf.validate_params()
    with pytest.raises(InvalidConfig, match=match):
        clf.fit(Dataset([Record("phantom:seed=0;size=16;index=0", 0)], "binary", ["a", "b"]))


def test_unknown_network_fails_at_fit():
    with pytest.raises(InvalidConfig, match="unknown network"):
        TorchClassifier(network="no_such_net", epochs=1).fit(
            Dataset([Record("phantom:seed=0;size=16;index=0", 0),
                     Record("phantom:seed=0;size=16;index=1", 1)], "binary", ["a", "b"]))


def test_ensemble_averages_members_and_round_trips(breast, tmp_path):
    train, val = subset(breast.split("train"), 60), breast.split("val")
    ens = TorchEnsemble(params=_params(epochs=1), n_folds=2).fit(train, val)
    assert len(ens.members_) == 2
    proba = ens.predict_proba(val)
    mean = np.mean([m.predict_proba(val) for m in ens.members_], axis=0)
    assert np.allclose(proba, mean)
    assert not np.allclose(ens.members_[0].predict_proba(val), ens.members_[1].predict_proba(val))
    ens.save(tmp_path / "ens")
    again = load_estimator(tmp_path / "ens")
    assert isinstance(again, TorchEnsemble) and np.array_equal(again.predict_proba(val), proba)
    wrapped = TorchEnsemble.from_members(ens.members_)
    assert np.allclose(wrapped.predict_proba(val), proba)


def test_cnn_embeddings_are_a_registered_feature(breast, tmp_path):
    from medsight.features import available_features, make_features

    assert "cnn" in available_features()
    train = subset(breast.split("train"), 40)
    clf = TorchClassifier(**_params(epochs=1)).fit(train)
    clf.save(tmp_path / "m")
    x = load_arrays(train).x
    feats = make_features(["cnn"], cnn={"model": str(tmp_path / "m")})
    out = feats.fit_transform(x)
    assert out.shape == (40, clf.model_.network.num_features)
    assert np.allclose(out, clf.embed(train), atol=1e-5)
    assert list(feats.get_feature_names_out()[:2]) == ["cnn_0", "cnn_1"]
    random_net = make_features(["cnn"], cnn={"network": "tiny_cnn_test"}).fit_transform(x)
    assert random_net.shape == out.shape and not np.allclose(random_net, out)


def test_torch_model_standardises_inputs():
    from medsight.models.networks import create_network

    net = create_network("tiny_cnn_test")
    model = TorchModel(net, 1)
    model.set_input_stats([100.0], [50.0])
    x = torch.full((2, 1, 8, 8), 150.0)
    assert torch.allclose(model.prepare(x), torch.ones_like(x))
    model.set_input_stats([0.0], [0.0])  # a constant training set: no division by zero
    assert torch.equal(model.prepare(x), x)
